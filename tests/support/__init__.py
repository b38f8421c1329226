"""What the tests add to the app's Slack stand-in (`bot.local`): fault injection, call
recording, Block Kit checks and Socket Mode; what Slack sends the app, signed, comes from
`bot.local.payloads`."""
