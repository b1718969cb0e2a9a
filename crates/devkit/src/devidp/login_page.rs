//! The provider's HTML: the login form, error pages and the signed-out page.
//! Everything echoed into a page goes through [`escape`].

pub(super) use crate::html::escape;

const STYLE: &str = "
  * { box-sizing: border-box; }
  body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
         font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; background: #eef1f5; color: #1f2933; }
  main { width: 100%; max-width: 24rem; background: #fff; border-radius: 12px; padding: 2rem;
         box-shadow: 0 8px 30px rgba(15, 23, 42, .12); }
  h1 { font-size: 1.25rem; margin: 0 0 .25rem; }
  .subtitle { margin: 0 0 1.5rem; color: #52606d; font-size: .9rem; }
  .dev-only { background: #fff7e0; border: 1px solid #f0c36d; color: #7a5300; border-radius: 8px;
              padding: .6rem .8rem; font-size: .85rem; margin-bottom: 1.25rem; }
  .error { background: #fde8e8; border: 1px solid #f5a3a3; color: #9b1c1c; border-radius: 8px;
           padding: .6rem .8rem; font-size: .9rem; margin-bottom: 1rem; }
  label { display: block; font-size: .85rem; font-weight: 600; margin: .75rem 0 .3rem; }
  input { width: 100%; padding: .6rem .7rem; border: 1px solid #cbd2d9; border-radius: 8px; font-size: 1rem; }
  input:focus { outline: 2px solid #3b82f6; border-color: transparent; }
  button { width: 100%; margin-top: 1.25rem; padding: .7rem; border: 0; border-radius: 8px;
           background: #1d4ed8; color: #fff; font-size: 1rem; font-weight: 600; cursor: pointer; }
  button:hover { background: #1e40af; }
  .hint { margin-top: 1rem; color: #7b8794; font-size: .8rem; text-align: center; }
  code { background: #f1f5f9; padding: 0 .25rem; border-radius: 4px; }
";

fn page(title: &str, content: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{content}\n</main>\n</body>\n</html>\n",
        title = escape(title),
    )
}

const DEV_ONLY: &str = "<p class=\"dev-only\"><strong>For development only.</strong> \
    This provider has fixed demo users and keeps everything in memory. Never use it in production.</p>";

/// The login form. `hidden` are the authorization request parameters carried
/// through the POST; `error` is shown above the form; `username` is pre-filled.
pub(super) fn login(
    form_action: &str,
    client_id: &str,
    hidden: &[(&str, &str)],
    username: &str,
    error: Option<&str>,
) -> String {
    let hidden_inputs: String = hidden
        .iter()
        .map(|(name, value)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">\n", escape(name), escape(value)))
        .collect();
    let error =
        error.map(|message| format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape(message))).unwrap_or_default();
    let content = format!(
        "<h1>Portcullis development provider</h1>\n\
         <p class=\"subtitle\">Sign in to continue to <strong>{client}</strong></p>\n\
         {DEV_ONLY}\n{error}\
         <form method=\"post\" action=\"{action}\">\n{hidden_inputs}\
         <label for=\"username\">Username</label>\n\
         <input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" value=\"{username}\" required autofocus>\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\n\
         <button type=\"submit\">Sign in</button>\n\
         </form>\n\
         <p class=\"hint\">Demo users: <code>alice</code> / <code>alice</code>, <code>bob</code> / <code>bob</code></p>",
        client = escape(client_id),
        action = escape(form_action),
        username = escape(username),
    );
    page("Sign in - Portcullis development provider", &content)
}

/// An error page for requests that cannot be redirected back to the client.
pub(super) fn error_page(title: &str, message: &str) -> String {
    let content =
        format!("<h1>{}</h1>\n<p class=\"error\" role=\"alert\">{}</p>\n{DEV_ONLY}", escape(title), escape(message));
    page(title, &content)
}

/// The page shown after logout when there is nowhere to send the browser back to.
pub(super) fn signed_out() -> String {
    let content = format!(
        "<h1>Signed out</h1>\n<p class=\"subtitle\">You have been signed out of the \
         Portcullis development provider. You can close this window.</p>\n{DEV_ONLY}"
    );
    page("Signed out - Portcullis development provider", &content)
}
