"""A small but real OAuth 2.0 authorization server for the test stack.

Run as `python -m infra.oauth_server` (normally by `infra.oauth.up()`). The OAuth logic (grant
handling, client authentication, error responses, token response format) is oauthlib's; this
package supplies what oauthlib leaves to the application: persistent storage (`_store`), the
RS256 signing key (`_keys`), the policy hooks (`_validator`: who may get which token,
refresh-token rotation and replay detection) and the HTTP edge (`_http`, aiohttp). The public
key is published for Dovecot by `infra.oauth.publish_keys`. See docs/oauth-server.md.
"""
