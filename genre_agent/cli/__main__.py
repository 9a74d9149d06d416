"""``python -m genre_agent.cli``: the same as the ``genre`` command."""

from genre_agent.cli.main import main

if __name__ == "__main__":
    main()
