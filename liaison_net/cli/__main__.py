"""`python -m liaison_net.cli` runs the `liaison` command (tests use it with their venv)."""

from liaison_net.cli.main import main

main()
