"""Single sign-on by OpenID Connect: pure rules, ID-token checks, the provider client, SQL."""
