"""What the tests add to the app's Slack stand-in (`bot.local.server`): fault injection, call
recording, Block Kit checks, Socket Mode, and signing requests as Slack does."""
