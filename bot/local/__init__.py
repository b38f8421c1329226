"""What `python -m bot try` runs, and what the tests build on: a local stand-in for one Slack
workspace (its Web API, response_urls, files and views over real HTTP) and the signed payloads
Slack sends an app. The product never imports this package; only `bot.__main__` (for `try`)
may."""
