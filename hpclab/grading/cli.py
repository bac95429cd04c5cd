"""`hpclab grade`: the exercises' whole nbgrader cycle from one command.

    hpclab grade generate [ASSIGNMENT ...]    source/ -> release/ (commit the result)
    hpclab grade check                        release/ is what generate would write now
    hpclab grade release ASSIGNMENT ...       student copies -> the exchange
    hpclab grade fetch ASSIGNMENT             (student) the exchange -> ./ASSIGNMENT/
    hpclab grade submit ASSIGNMENT            (student) ./ASSIGNMENT/ -> the exchange
    hpclab grade collect ASSIGNMENT           the exchange -> out/grading/submitted/<student>/
    hpclab grade autograde [SUBMISSION]       score, print each failing test and its message
    hpclab grade feedback ASSIGNMENT          out/grading/feedback/<student>/ASSIGNMENT/*.html
    hpclab grade publish OUT                  the student repository (no source/) in OUT

--exchange (default $HPCLAB_EXCHANGE, else nbgrader's /usr/local/share/nbgrader/exchange),
--course (default hpclab) and --grading (the instructor's nbgrader course directory,
default out/grading/) go before or after the command. `autograde SUBMISSION` grades a folder in
a throw-away course directory; `autograde` alone grades what `collect` gathered, in
--grading, for `feedback`. Exit status: 0 done, 1 nbgrader failed (its log is printed),
2 a submission or argument to fix (the message says how).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .autograde import autograde, report
from .course import NbgraderError
from .cycle import DEFAULT_EXCHANGE, collect, feedback, fetch, release, submit
from .generate import check, generate
from .layout import COURSE_ID, EXERCISES, GRADING
from .publish import publish
from .submissions import SubmissionError


def _common(defaults: bool) -> argparse.ArgumentParser:
    """The folder options, accepted before and after the command (`hpclab grade --exchange
    DIR fetch X` or `hpclab grade fetch X --exchange DIR`)."""
    def default(value):
        return value if defaults else argparse.SUPPRESS
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--exercises", type=Path, default=default(EXERCISES),
                        help="folder with source/ and release/ (default: the course's)")
    common.add_argument("--exchange", type=Path,
                        default=default(Path(os.environ.get("HPCLAB_EXCHANGE", DEFAULT_EXCHANGE))),
                        help="nbgrader's exchange folder (default: $HPCLAB_EXCHANGE, else "
                             f"{DEFAULT_EXCHANGE})")
    common.add_argument("--course", default=default(COURSE_ID),
                        help=f"course id (default {COURSE_ID})")
    common.add_argument("--grading", type=Path, default=default(GRADING),
                        help="the instructor's nbgrader course directory (default out/grading)")
    return common


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpclab grade", description=__doc__.split("\n")[0],
                                     parents=[_common(defaults=True)])
    sub = parser.add_subparsers(dest="command", required=True)
    later = [_common(defaults=False)]

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=later)

    g = command("generate", help="write student copies into release/")
    g.add_argument("assignments", nargs="*")
    command("check", help="fail if release/ is out of sync with source/")
    r = command("release", help="release student copies to the exchange")
    r.add_argument("assignments", nargs="+")
    r.add_argument("--force", action="store_true", help="replace an earlier release")
    f = command("fetch", help="(student) fetch a released assignment")
    f.add_argument("assignment")
    f.add_argument("--into", type=Path, default=Path("."), help="folder to fetch into (default .)")
    s = command("submit", help="(student) submit ./ASSIGNMENT/")
    s.add_argument("assignment")
    s.add_argument("--from", dest="folder", type=Path, default=Path("."),
                   help="folder holding ASSIGNMENT/ (default .)")
    s.add_argument("--student", default=None, help="student id (default: your login name)")
    c = command("collect", help="collect the latest submissions from the exchange")
    c.add_argument("assignment")
    a = command("autograde", help="score submissions")
    a.add_argument("submission", type=Path, nargs="?", default=None,
                   help="a submission folder (default: --grading's submitted/)")
    a.add_argument("--student", default="student")
    a.add_argument("--keep", type=Path, default=None,
                   help="copy the executed notebooks (with tracebacks) to this folder")
    fb = command("feedback", help="HTML feedback per student from the autograded notebooks")
    fb.add_argument("assignment")
    fb.add_argument("--student", default=None)
    p = command("publish", help="write the student repository (no solutions) to OUT")
    p.add_argument("out", type=Path)
    return parser


def _run(args) -> int:
    if args.command == "generate":
        for path in generate(args.assignments, exercises=args.exercises):
            print(f"wrote {path}")
    elif args.command == "check":
        problems = check(args.exercises)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("run `hpclab grade generate` and commit release/", file=sys.stderr)
            return 1
        print("release/ is in sync with source/")
    elif args.command == "release":
        for path in release(args.assignments, args.exchange, args.course, args.grading,
                            args.exercises, force=args.force):
            print(f"released {path}")
    elif args.command == "fetch":
        print(f"fetched {fetch(args.assignment, args.exchange, args.into, args.course)}")
    elif args.command == "submit":
        submit(args.assignment, args.exchange, args.folder, args.course, args.student)
        print(f"submitted {args.folder / args.assignment}")
    elif args.command == "collect":
        students = collect(args.assignment, args.exchange, args.course, args.grading,
                           args.exercises)
        print(f"collected {args.assignment} from {len(students)} student(s): "
              f"{', '.join(students) or '-'} into {args.grading / 'submitted'}")
    elif args.command == "autograde":
        if args.submission is None:
            if not (args.grading / "submitted").is_dir():
                raise FileNotFoundError(f"nothing collected in {args.grading / 'submitted'}: run "
                                        "`hpclab grade collect ASSIGNMENT` first, or pass a "
                                        "submission folder")
            scores = autograde(args.grading / "submitted", exercises=args.exercises,
                               keep=args.keep, course=args.grading)
        else:
            scores = autograde(args.submission, args.student, exercises=args.exercises,
                               keep=args.keep)
        print(report(scores))
    elif args.command == "feedback":
        for path in feedback(args.assignment, args.grading, args.student):
            print(f"wrote {path}")
    elif args.command == "publish":
        written = publish(args.out)
        print(f"wrote the student repository to {args.out} ({len(written)} files)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (SubmissionError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"hpclab grade {args.command}: {e}", file=sys.stderr)
        return 2
    except NbgraderError as e:
        print(f"hpclab grade {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
