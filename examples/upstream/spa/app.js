// The demo app's one script, for both pages. The login page posts the form as JSON to the login endpoint
// (the proxy's jwt-login, which answers with the token as an HttpOnly cookie, out of this script's reach)
// and then goes to the app. The app page logs out with a POST, never a link, so that another site cannot
// log the user out, and calls a protected API to show that the cookie opens it.
"use strict";

const LOGIN_API = "/login_api";
const LOGOUT = "/logout";
const PROTECTED_API = "/setattr_api";

async function login(event) {
  event.preventDefault();
  const error = document.getElementById("error");
  error.hidden = true;
  try {
    const response = await fetch(LOGIN_API, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        username: document.getElementById("username").value,
        password: document.getElementById("password").value,
      }),
    });
    if (response.ok) {
      location.assign("/");
      return;
    }
    const reply = await response.json().catch(() => ({}));
    error.textContent = reply.message || `Login failed (${response.status})`;
  } catch (e) {
    error.textContent = `Login failed: ${e.message}`;
  }
  error.hidden = false;
}

async function logout() {
  try {
    await fetch(LOGOUT, { method: "POST" });
  } finally {
    location.assign("/");
  }
}

async function callApi() {
  const result = document.getElementById("api-result");
  try {
    const response = await fetch(PROTECTED_API, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ theme: "dark" }),
    });
    result.textContent = `${response.status}\n${await response.text()}`;
  } catch (e) {
    result.textContent = `failed: ${e.message}`;
  }
}

// `defer`: the page is parsed when this runs. Each page has only its own elements.
document.getElementById("login-form")?.addEventListener("submit", login);
document.getElementById("logout")?.addEventListener("click", logout);
document.getElementById("call-api")?.addEventListener("click", callApi);
