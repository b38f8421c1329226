"""Many workspaces on one deployment: installations, the secrets they hold, and their keys.

`secrets` seals every secret the app keeps (Slack tokens, refresh tokens, later each
workspace's Motion key) with Fernet under `SECRET_KEYS`; `installations` is Slack's installation
and OAuth state stores on the project's own store; `rotation` re-encrypts what is stored under
the first key. It may import `bot.store` and `bot.config`; jobs, listeners and app import it.
"""
