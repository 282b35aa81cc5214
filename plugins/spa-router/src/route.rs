//! The routing table, apart from the host: what kind of path a request has, and what the verdict on its
//! token makes of it.

use weir_sdk::ConfigError;
use weir_sdk::exclude::{PathPatterns, has_dot_segment};

/// What jwt-auth recorded about the request's token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Missing,
    Bad,
}

impl Verdict {
    /// No verdict at all is `missing`: no jwt-auth ran (or it let the request through unchecked), so
    /// nobody vouched for a token. A value this plugin does not know is `bad`, never `valid`.
    pub fn from_context(value: Option<&str>) -> Self {
        match value {
            Some("valid") => Verdict::Valid,
            None | Some("missing") => Verdict::Missing,
            Some(_) => Verdict::Bad,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    App,
    Login,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    App,
    Login,
    /// A whitelisted path or a static asset: passes whatever the token.
    Open,
    Protected,
    /// Anything else: a client-side route of the app, or a mistyped URL.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Pass,
    /// Redirect to the page, or serve it at the requested URL.
    Goto(Page),
    /// A protected API without a token: 401.
    Unauthorized,
    /// A protected API with a bad token: 403.
    Forbidden,
}

/// Pages are routed, never refused: a browser shows a 401 as an error page, where the login page is what
/// the user needs. APIs are called by the app's code, which reads the status.
pub fn decide(kind: Kind, verdict: Verdict) -> Decision {
    match (kind, verdict) {
        (Kind::Open, _) => Decision::Pass,
        (Kind::App, Verdict::Valid) => Decision::Pass,
        (Kind::App, _) => Decision::Goto(Page::Login),
        (Kind::Login, Verdict::Valid) => Decision::Goto(Page::App),
        (Kind::Login, _) => Decision::Pass,
        (Kind::Protected, Verdict::Valid) => Decision::Pass,
        (Kind::Protected, Verdict::Missing) => Decision::Unauthorized,
        (Kind::Protected, Verdict::Bad) => Decision::Forbidden,
        (Kind::Unknown, Verdict::Valid) => Decision::Goto(Page::App),
        (Kind::Unknown, _) => Decision::Goto(Page::Login),
    }
}

pub struct Router {
    app: String,
    login: String,
    /// `whitelist` and `assets`, which route alike.
    open: PathPatterns,
    protected: PathPatterns,
}

/// The config fields the router is built from.
pub struct Spec<'a> {
    pub app: &'a str,
    pub login: &'a str,
    pub whitelist: &'a [String],
    pub assets: &'a [String],
    pub protected: &'a [String],
}

impl Router {
    pub fn build(spec: &Spec) -> Result<Self, ConfigError> {
        check_page("app", spec.app)?;
        check_page("login", spec.login)?;
        if spec.app == spec.login {
            return Err(ConfigError::new(
                "login",
                format!("`{}` is the app entry too; they must differ", spec.login),
            ));
        }
        Ok(Self {
            app: spec.app.to_owned(),
            login: spec.login.to_owned(),
            open: PathPatterns::build(&[("whitelist", spec.whitelist), ("assets", spec.assets)])?,
            protected: PathPatterns::build(&[("protected", spec.protected)])?,
        })
    }

    /// The app and login pages first, so that a broad pattern (`/.*\.html`) cannot take them out of
    /// routing; the whitelist before `protected`, so that it can open one API under a protected prefix.
    pub fn kind(&self, path: &str) -> Kind {
        if path == self.app {
            Kind::App
        } else if path == self.login {
            Kind::Login
        } else if self.opens(path) {
            Kind::Open
        } else if self.protected.matches(path) {
            Kind::Protected
        } else {
            Kind::Unknown
        }
    }

    /// A path with a dot segment is never opened: an upstream that resolves `/static/..\api/x` itself
    /// would reach an API the pattern for `/static/.*` was never meant to open.
    fn opens(&self, path: &str) -> bool {
        self.open.matches(path) && !has_dot_segment(path)
    }

    pub fn page(&self, page: Page) -> &str {
        match page {
            Page::App => &self.app,
            Page::Login => &self.login,
        }
    }
}

/// A redirect's `Location`: the page, with the client's query kept (as nginx's `rewrite … redirect`), so a
/// link's parameters survive the detour. Relative, so the client's `Host` is never echoed back.
pub fn location(page: &str, query: Option<&str>) -> String {
    match query {
        Some(query) if !query.is_empty() => format!("{page}?{query}"),
        _ => page.to_owned(),
    }
}

/// Page paths are compared with the host's normal form of the request path, so one written otherwise
/// could never match.
fn check_page(field: &str, path: &str) -> Result<(), ConfigError> {
    let refuse = |why: &str| Err(ConfigError::new(field, format!("`{path}` {why}")));
    if !path.starts_with('/') {
        return refuse("is not an absolute path (it must start with '/')");
    }
    if let Some(b) = path
        .bytes()
        .find(|b| !b.is_ascii_graphic() || matches!(b, b'?' | b'#'))
    {
        return match b {
            b'?' => refuse("has a query ('?'); give the path only"),
            b'#' => refuse("has a fragment ('#')"),
            b' ' => refuse("contains a space"),
            _ => refuse("contains a control byte or a non-ASCII character"),
        };
    }
    if path.contains("//") || has_dot_segment(path) {
        return refuse("is not in normal form (no `//`, `.` or `..` segments)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(patterns: &[&str]) -> Vec<String> {
        patterns.iter().map(|p| p.to_string()).collect()
    }

    /// The scenario's router: `/login_api` whitelisted, `/setattr_api` protected, assets under `/static/`.
    fn scenario() -> Router {
        Router::build(&Spec {
            app: "/index.html",
            login: "/login.html",
            whitelist: &owned(&["/login_api"]),
            assets: &owned(&["/static/.*", r".*\.(css|js|png|ico)"]),
            protected: &owned(&["/setattr_api", "/api/.*"]),
        })
        .unwrap()
    }

    #[test]
    fn the_scenario_table() {
        use Decision::*;
        let router = scenario();
        let rows = [
            ("/index.html", Pass, Goto(Page::Login), Goto(Page::Login)),
            ("/login.html", Goto(Page::App), Pass, Pass),
            ("/login_api", Pass, Pass, Pass),
            ("/setattr_api", Pass, Unauthorized, Forbidden),
            (
                "/404",
                Goto(Page::App),
                Goto(Page::Login),
                Goto(Page::Login),
            ),
            ("/static/app.js", Pass, Pass, Pass),
        ];
        for (path, valid, missing, bad) in rows {
            let kind = router.kind(path);
            assert_eq!(decide(kind, Verdict::Valid), valid, "{path} valid");
            assert_eq!(decide(kind, Verdict::Missing), missing, "{path} missing");
            assert_eq!(decide(kind, Verdict::Bad), bad, "{path} bad");
        }
    }

    #[test]
    fn paths_are_classified_in_order() {
        let router = Router::build(&Spec {
            app: "/index.html",
            login: "/login.html",
            whitelist: &owned(&["/api/login"]),
            assets: &owned(&[r"/.*\.html"]),
            protected: &owned(&["/api/.*"]),
        })
        .unwrap();
        assert_eq!(router.kind("/index.html"), Kind::App, "pages before assets");
        assert_eq!(router.kind("/login.html"), Kind::Login);
        assert_eq!(router.kind("/help.html"), Kind::Open);
        assert_eq!(
            router.kind("/api/login"),
            Kind::Open,
            "whitelist before protected"
        );
        assert_eq!(router.kind("/api/orders"), Kind::Protected);
        assert_eq!(router.kind("/"), Kind::Unknown);
        assert_eq!(router.kind("/index.html/x"), Kind::Unknown);
    }

    #[test]
    fn patterns_match_the_whole_path() {
        let router = scenario();
        assert_eq!(router.kind("/login_api"), Kind::Open);
        for path in ["/login_api/admin", "/x/login_api", "/login_apix"] {
            assert_eq!(router.kind(path), Kind::Unknown, "{path}");
        }
        assert_eq!(router.kind("/setattr_api/x"), Kind::Unknown);
    }

    #[test]
    fn dot_segments_never_open_a_path() {
        let router = scenario();
        for path in [
            "/static/..\\setattr_api",
            "/static/%2e%2E/x.js",
            "/static/./x",
        ] {
            assert_ne!(router.kind(path), Kind::Open, "{path}");
        }
        assert_eq!(router.kind("/static/..x/.y"), Kind::Open);
    }

    #[test]
    fn verdicts_other_than_valid_never_pass_as_valid() {
        assert_eq!(Verdict::from_context(Some("valid")), Verdict::Valid);
        assert_eq!(Verdict::from_context(None), Verdict::Missing);
        assert_eq!(Verdict::from_context(Some("missing")), Verdict::Missing);
        for other in ["bad", "VALID", "valid ", "", "yes"] {
            assert_eq!(
                Verdict::from_context(Some(other)),
                Verdict::Bad,
                "{other:?}"
            );
        }
    }

    #[test]
    fn locations_keep_the_query() {
        assert_eq!(location("/login.html", None), "/login.html");
        assert_eq!(location("/login.html", Some("")), "/login.html");
        assert_eq!(
            location("/index.html", Some("lang=fr&x=%2F")),
            "/index.html?lang=fr&x=%2F"
        );
    }

    fn error(spec: Spec) -> ConfigError {
        Router::build(&spec).err().expect("refused")
    }

    #[test]
    fn bad_configs_name_the_field() {
        let none: Vec<String> = Vec::new();
        let spec = |app, login| Spec {
            app,
            login,
            whitelist: &none,
            assets: &none,
            protected: &none,
        };
        for (app, login, field, why) in [
            ("index.html", "/login.html", "app", "not an absolute path"),
            ("/index.html", "", "login", "not an absolute path"),
            ("/index.html?x", "/login.html", "app", "query"),
            ("/index.html", "/a b", "login", "space"),
            ("/a/../index.html", "/login.html", "app", "normal form"),
            ("//index.html", "/login.html", "app", "normal form"),
            ("/index.html", "/index.html", "login", "must differ"),
        ] {
            let e = error(spec(app, login));
            assert_eq!(e.field, field, "{app} {login}");
            assert!(e.message.contains(why), "{app} {login}: {}", e.message);
        }
        let bad = owned(&["/ok", "/(unclosed"]);
        for (i, field) in ["whitelist", "assets", "protected"].iter().enumerate() {
            let lists: [&[String]; 3] = [
                if i == 0 { &bad } else { &none },
                if i == 1 { &bad } else { &none },
                if i == 2 { &bad } else { &none },
            ];
            let e = error(Spec {
                app: "/index.html",
                login: "/login.html",
                whitelist: lists[0],
                assets: lists[1],
                protected: lists[2],
            });
            assert_eq!(e.field, format!("{field}.1"));
            assert!(e.message.contains("/(unclosed"), "{}", e.message);
        }
    }
}
