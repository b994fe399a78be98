"""The `minialbert` command line: a thin layer over the library, one subcommand per pipeline step."""

import argparse
import sys

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minialbert",
        description="Turn a BERT teacher into a small recursive MiniAlbert student and share it on the Hub.",
    )
    parser.add_argument("--version", action="version", version=f"minialbert {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 1
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
