"""The product's Slack side: what it says (`out`), the files it reads (`files`), every id it
builds or listens for (`ids`), and every message and view, by surface (`messages`)."""
