"""`python -m spotplan` runs the same CLI as the `spotplan` console script."""

from spotplan.cli.main import run

if __name__ == "__main__":
    run()
