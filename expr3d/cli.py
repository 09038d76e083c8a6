"""What every command-line tool does at its edges, written once: flag bounds, one-line errors, exit codes.

    from expr3d import cli
    flags.DEFINE_integer("batch_size", 8, "...")
    cli.at_least("batch_size", 1)                   # absl validator: checked while parsing, before any work
    ...
    if __name__ == "__main__":
        cli.run(main, "expr3d.synthesize")          # instead of app.run(main)

`run` parses the flags and calls `main(argv)`. A bad command line (unknown flag, value out of bounds, missing
required flag, unexpected argument) and every *expected* error end in ONE line on stderr,
`<program>: error: <message naming the flag or the file>`, and the exit code of `EXIT_CODES`; an unexpected one (a
bug) prints its traceback and says so. `EXPR3D_TRACEBACK=1` in the environment prints the traceback of expected
errors too (for debugging).

Exit codes (README and docs/reliability.md show this table):

    0    success
    1    bad input or output: a file, folder or data the command cannot use (missing, unreadable, corrupt, refused
         output location, disk full), or nothing it could do (every photo skipped, a judge below its threshold)
    2    bad command line: unknown flag, a value out of bounds, a missing required flag, unexpected arguments
         (`expr3d.train`: also every refusal before training starts, its documented code since its first version)
    3    `expr3d.train`: a non-finite loss stopped the run (the last good checkpoint is kept)
    70   an unexpected error, i.e. a bug in expr3d: the traceback is printed; please report it
    130  interrupted (SIGINT / Ctrl-C); `expr3d.train` checkpoints first
    143  `expr3d.train`: SIGTERM (checkpointed; rerun the same command to resume)
"""
import os
import re
import sys
import traceback

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NON_FINITE = 3
EXIT_BUG = 70  # sysexits.h EX_SOFTWARE
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_ERROR: "bad input or output (a file, folder or data the command cannot use), or nothing it could do",
    EXIT_USAGE: "bad command line (unknown flag, value out of bounds, missing required flag, unexpected argument)",
    EXIT_NON_FINITE: "expr3d.train: a non-finite loss stopped the run",
    EXIT_BUG: "unexpected error (a bug in expr3d): traceback printed",
    EXIT_SIGINT: "interrupted (SIGINT)",
    EXIT_SIGTERM: "expr3d.train: stopped by SIGTERM after checkpointing",
}

REPORT_BUGS = ("this is a bug in expr3d, not a problem with your input: please report it on the project's issue "
               "tracker with the command line and the traceback above")
TRACEBACK_ENV = "EXPR3D_TRACEBACK"


class UsageError(ValueError):
    """A bad command line found after parsing (e.g. a combination of flags): exit code 2, message names the flag."""


class NothingDone(Exception):
    """The command ran but produced nothing (e.g. every input skipped): exit code 1, message gives the counts."""


# --- flag bounds (absl validators) ------------------------------------------------------------------------------

def _flag_values(flag_values):
    if flag_values is not None:
        return flag_values
    from absl import flags

    return flags.FLAGS


def check(name, predicate, requirement, allow_none=True, flag_values=None):
    """Register an absl validator: `--name` must satisfy `predicate` (None passes when `allow_none`); the parse error
    reads `flag --name=VALUE: must be <requirement>`."""
    from absl import flags

    flags.register_validator(name, lambda value: (allow_none and value is None) or bool(predicate(value)),
                             message=f"must be {requirement}", flag_values=_flag_values(flag_values))


def at_least(name, minimum, meaning="", **kwargs):
    """`--name >= minimum`; `meaning` explains a special value (e.g. "0 = at the end only")."""
    check(name, lambda v: v >= minimum, f">= {minimum}" + (f" ({meaning})" if meaning else ""), **kwargs)


def positive(name, **kwargs):
    """`--name > 0` (rates, epsilons, tolerances)."""
    check(name, lambda v: v > 0, "> 0", **kwargs)


def in_range(name, low, high, low_open=False, high_open=False, **kwargs):
    """`low <= --name <= high` (`*_open`: strict)."""
    text = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    check(name, lambda v: (v > low if low_open else v >= low) and (v < high if high_open else v <= high), text,
          **kwargs)


def multiple_of(name, factor, minimum, why, **kwargs):
    """`--name` a multiple of `factor` and >= `minimum` (sizes the network needs); `why` says what needs it."""
    check(name, lambda v: v >= minimum and v % factor == 0, f"a multiple of {factor} and >= {minimum} ({why})",
          **kwargs)


def seed(name="seed", **kwargs):
    """Seeds: 0 <= --name < 2**32 (NumPy's range)."""
    in_range(name, 0, 2**32 - 1, **kwargs)


def parses(name, parse, flag_values=None):
    """Register an absl validator: `parse(--name's value)` must not raise ValueError (its message is the error).
    For flags whose value is a name or a list (expressions, metrics, TFLite variants)."""
    from absl import flags

    def validate(value):
        try:
            parse(value)
        except ValueError as error:
            raise flags.ValidationError(str(error)) from None
        return True

    flags.register_validator(name, validate, flag_values=_flag_values(flag_values))


def no_arguments(argv):
    """Refuse positional arguments of a command that takes only flags (UsageError naming them)."""
    if len(argv) > 1:
        raise UsageError(f"unexpected argument(s) {' '.join(argv[1:])}: this command takes only --flags "
                         f"(a flag's value needs '=', e.g. --output=DIR)")


# --- errors -> one line + exit code ------------------------------------------------------------------------------

_TF_DATA_ERRORS = ("DataLossError", "InvalidArgumentError", "NotFoundError", "PermissionDeniedError",
                   "FailedPreconditionError", "OutOfRangeError", "ResourceExhaustedError")
_TF_NOISE = ("Detected at node", "<stack traces unavailable>", "Graph execution error:", "[[{{node", "[[node")


def _tensorflow_error(error):
    """The error's TensorFlow OpError class name when it is one of the data errors above (TensorFlow is never
    imported here: an error from it can only exist when it is loaded)."""
    tf_errors = sys.modules.get("tensorflow.python.framework.errors_impl")
    if tf_errors is None or not isinstance(error, tf_errors.OpError):
        return None
    name = type(error).__name__
    return name if name in _TF_DATA_ERRORS else None


def one_line(error):
    """The message of `error` on one line (TensorFlow's graph locations and op names dropped)."""
    text = getattr(error, "message", None) if _tensorflow_error(error) else None
    text = str(text if text is not None else error)
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if not line or any(line.startswith(noise) for noise in _TF_NOISE):
            continue
        cut = line.find(" [Op:")
        lines.append(line[:cut] if cut > 0 else line)
    return "; ".join(lines) or type(error).__name__


def exit_code(error, errors=()):
    """The documented exit code of an expected error, or None for an unexpected one (a bug).

    `errors`: the command's own (exception class, code) pairs, checked first.
    """
    from absl import app, flags

    from expr3d.outputs import OutputError

    for kind, code in errors:
        if isinstance(error, kind):
            return code
    if isinstance(error, (UsageError, app.UsageError, flags.Error)):
        return EXIT_USAGE
    if isinstance(error, (OutputError, NothingDone, OSError, MemoryError)):
        return EXIT_ERROR
    if isinstance(error, ValueError) and not isinstance(error, UnicodeError):
        return EXIT_ERROR  # the project's bad-input errors are ValueErrors naming the flag or file
    if _tensorflow_error(error):
        return EXIT_ERROR  # reading a file: a corrupt or truncated record, a missing shard, an undecodable image
    return None


def _message(error):
    if isinstance(error, MemoryError):
        return "out of memory" + (f": {one_line(error)}" if str(error) else "")
    if _tensorflow_error(error):
        return f"TensorFlow could not read the data ({type(error).__name__}): {one_line(error)}"
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return one_line(error)


def fail(program, message, code=EXIT_ERROR):
    """Print `<program>: error: <message>` (one line) and return `code` (for `return cli.fail(...)` in main)."""
    print(f"{program}: error: {message}", file=sys.stderr, flush=True)
    return code


def call(main, argv, program, errors=()):
    """`main(argv)` with expected errors turned into one line and their exit code; returns the exit code."""
    try:
        code = main(argv)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        return fail(program, "interrupted", EXIT_SIGINT)
    except BaseException as error:  # noqa: BLE001 - every error is either mapped or reported as a bug
        code = exit_code(error, errors)
        if code is None:
            traceback.print_exc()
            return fail(program, f"unexpected {type(error).__name__}: {one_line(error)}; {REPORT_BUGS}", EXIT_BUG)
        if os.environ.get(TRACEBACK_ENV):
            traceback.print_exc()
        return fail(program, _message(error), code)
    return EXIT_OK if code is None else int(code)


def parse_flags(argv, program):
    """absl's flag parsing with a bad command line reported as one line and exit code 2 (instead of absl's
    two-line "FATAL Flags parsing error" and exit code 1)."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        text = one_line(error)
        # mark_flag_as_required's wording ("flag --x=None: Flag --x must have a value other than None.") made plain.
        if "must have a value other than None" in text:
            text = text.split(": Flag ", 1)[-1].replace(" must have a value other than None.", " is required")
        # A validator's message that names its flag again ("flag --x=v: --x: ...") names it once.
        text = re.sub(r"^(flag --([\w-]+)=.*?): --\2:? ", r"\1: ", text)
        sys.exit(fail(program, text, EXIT_USAGE))


def run(main, program, errors=()):
    """`absl.app.run(main)` with `parse_flags` and `call`: the one entry point of every expr3d command.

    Args:
        main: `main(argv) -> exit code or None`.
        program: the command's name in messages (e.g. "expr3d.lite").
        errors: the command's own (exception class, exit code) pairs, checked before the shared table.
    """
    from absl import app

    app.run(lambda argv: sys.exit(call(main, argv, program, errors)),
            flags_parser=lambda argv: parse_flags(argv, program))
