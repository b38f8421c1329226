"""`python -m bot.sandbox --port 8787`: serve the Motion emulator until Ctrl-C or SIGTERM."""

from bot.sandbox.runner import main

if __name__ == "__main__":
    main()
