#!/usr/bin/env python3
"""Drives headless Chromium through examples/spa over the DevTools protocol, as a person would use it.

tests/spa_browser.rs starts the example (its run.sh) and Chromium, then runs

    python3 tests/browser/spa.py --devtools ws://127.0.0.1:PORT/devtools/browser/ID \
        --base http://127.0.0.1:8085 --screenshot examples/spa/screenshot.png

Each step prints one line; the first failure prints what the page showed and exits 1. Only the standard
library and the `websockets` package (`make test-deps`) are used: nothing is fetched at run time.
"""

import argparse
import base64
import json
import sys
import time

from websockets.sync.client import connect

USER, PASSWORD = "alice", "wonderland"
# Every wait is bounded: the whole walk takes a few seconds, and the Rust test allows it 45.
WAIT = 10.0


class Failure(Exception):
    pass


class Browser:
    """One page of a Chromium, reached through the browser's DevTools endpoint (a flat session)."""

    def __init__(self, devtools_url):
        # A PNG of the page comes back in one message, base64: allow it.
        self.ws = connect(devtools_url, max_size=32 << 20, open_timeout=WAIT)
        self.next_id = 0
        self.session = None
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.target = target
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Network.enable")
        # A fixed, small viewport: the screenshot is the same size on every machine.
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": 720, "height": 560, "deviceScaleFactor": 1, "mobile": False},
        )

    def close(self):
        try:
            self.session = None
            self.call("Target.closeTarget", {"targetId": self.target})
        except Exception:
            pass
        self.ws.close()

    def call(self, method, params=None):
        """Sends a command and returns its result; events that arrive meanwhile are dropped."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + WAIT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"{method}: no answer in {WAIT} s")
            reply = json.loads(self.ws.recv(timeout=left))
            if reply.get("id") != self.next_id:
                continue
            if "error" in reply:
                raise Failure(f"{method}: {reply['error']}")
            return reply.get("result", {})

    def js(self, expression):
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise Failure(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def page(self):
        """Where the page is and which of the example's two pages it shows."""
        return self.js(
            """({path: location.pathname + location.search,
                 ready: document.readyState,
                 marked: window.__weirOld === true,
                 app: !!document.getElementById('app'),
                 login: !!document.getElementById('login-form'),
                 title: document.title})"""
        )

    def mark(self):
        """Marks the current document, so that a wait can tell the next one from it."""
        self.js("window.__weirOld = true")

    def wait_for(self, path, page, why):
        """Until a new document at `path` has loaded and shows `page` ("app" or "login")."""
        deadline = time.monotonic() + WAIT
        seen = None
        while time.monotonic() < deadline:
            try:
                seen = self.page()
            except Failure:
                # The page is between documents.
                seen = None
            if seen and not seen["marked"] and seen["ready"] == "complete":
                if seen["path"] == path and seen[page]:
                    return seen
            time.sleep(0.05)
        raise Failure(f"{why}: expected the {page} page at {path}, the browser shows {seen}")

    def goto(self, url):
        self.mark()
        self.call("Page.navigate", {"url": url})

    def type_into(self, element_id, text):
        self.js(f"document.getElementById({json.dumps(element_id)}).focus()")
        self.js(f"document.getElementById({json.dumps(element_id)}).value = ''")
        self.call("Input.insertText", {"text": text})

    def click(self, element_id):
        """A real mouse click at the middle of the element."""
        box = self.js(
            f"""(() => {{ const r = document.getElementById({json.dumps(element_id)})
                .getBoundingClientRect(); return {{x: r.x + r.width / 2, y: r.y + r.height / 2}}; }})()"""
        )
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1},
            )

    def cookies(self, base):
        return {c["name"]: c for c in self.call("Network.getCookies", {"urls": [base + "/"]})["cookies"]}

    def wait_text(self, element_id, wanted, why):
        deadline = time.monotonic() + WAIT
        text = None
        while time.monotonic() < deadline:
            text = self.js(f"document.getElementById({json.dumps(element_id)}).textContent")
            if wanted in (text or ""):
                return text
            time.sleep(0.05)
        raise Failure(f"{why}: #{element_id} shows {text!r}, not {wanted!r}")


def step(text):
    print(f"ok: {text}", flush=True)


def walk(browser, base, screenshot):
    browser.goto(base + "/")
    browser.wait_for("/login.html", "login", "/ without a token")
    step("/ without a token lands on the login page")

    browser.type_into("username", USER)
    browser.type_into("password", "not-" + PASSWORD)
    browser.click("login")
    message = browser.wait_text("error", "wrong password", "a wrong password")
    if "token" in browser.cookies(base):
        raise Failure("a wrong password set the token cookie")
    step(f"a wrong password stays on the login page and shows {message!r}")

    browser.type_into("password", PASSWORD)
    browser.mark()
    browser.click("login")
    browser.wait_for("/index.html", "app", "signing in through the form")
    token = browser.cookies(base).get("token")
    if not token:
        raise Failure("signed in, but the browser holds no token cookie")
    if not token["httpOnly"] or token.get("sameSite") != "Lax":
        raise Failure(f"the token cookie is not HttpOnly with SameSite=Lax: {token}")
    if "token=" in browser.js("document.cookie"):
        raise Failure("the page's scripts can read the token (document.cookie)")
    step("signing in through the form lands on the app; the token is an HttpOnly cookie")

    browser.click("call-api")
    result = browser.wait_text("api-result", '"api": "/setattr_api"', "the protected API")
    if not result.startswith("200"):
        raise Failure(f"the protected API answered {result!r}")
    step("the app's button calls the protected API with the cookie: 200")

    shot = browser.call("Page.captureScreenshot", {"format": "png"})["data"]
    with open(screenshot, "wb") as f:
        f.write(base64.b64decode(shot))
    step(f"screenshot of the app written to {screenshot}")

    browser.goto(base + "/no/such/page?x=1")
    browser.wait_for("/index.html?x=1", "app", "an unknown path with a valid token")
    step("an unknown path shows the app (the query kept)")

    browser.goto(base + "/login.html")
    browser.wait_for("/index.html", "app", "the login page with a valid token")
    step("the login page with a valid token goes to the app")

    # Tampered: another user in the payload, alice's signature kept. The cookie is HttpOnly, which the
    # page's `document.cookie` cannot overwrite, so it is set through the browser, as an attacker with the
    # browser in hand would.
    header, _payload, signature = token["value"].split(".")
    forged = base64.urlsafe_b64encode(b'{"sub":"admin","user_id":0,"exp":9999999999}').rstrip(b"=")
    tampered = f"{header}.{forged.decode()}.{signature}"
    set_cookie = {"name": "token", "url": base + "/", "path": "/", "httpOnly": True, "sameSite": "Lax"}
    browser.call("Network.setCookie", {**set_cookie, "value": tampered})
    browser.goto(base + "/index.html")
    browser.wait_for("/login.html", "login", "the app with a tampered cookie")
    status = browser.js("fetch('/setattr_api', {method: 'POST'}).then(r => r.status)")
    if status != 403:
        raise Failure(f"the protected API answered {status} to a tampered token, not 403")
    step("a tampered cookie is sent back to the login page (and the API answers 403)")

    browser.call("Network.setCookie", {**set_cookie, "value": token["value"]})
    browser.goto(base + "/")
    browser.wait_for("/index.html", "app", "the valid cookie again")
    browser.mark()
    browser.click("logout")
    browser.wait_for("/login.html", "login", "logging out")
    if "token" in browser.cookies(base):
        raise Failure("logged out, but the browser still holds the token cookie")
    browser.goto(base + "/index.html")
    browser.wait_for("/login.html", "login", "the app after logging out")
    step("logging out clears the cookie and lands on the login page; the app is closed again")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--devtools", required=True, help="the browser's ws://… DevTools URL")
    parser.add_argument("--base", required=True, help="the example's http://127.0.0.1:PORT")
    parser.add_argument("--screenshot", required=True, help="where to write the app's PNG")
    args = parser.parse_args()
    browser = Browser(args.devtools)
    try:
        walk(browser, args.base.rstrip("/"), args.screenshot)
    except Failure as e:
        print(f"FAILED: {e}", flush=True)
        return 1
    finally:
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
