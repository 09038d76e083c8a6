"""What every command-line tool does at its edges, written once: flag bounds, one-line errors, exit codes.

    from expr3d import cli
    ...
    def define_flags():                             # flags defined here, not at import, so CLIs can share a process
        flags.DEFINE_string("output", None, "...")
        cli.required("output")                      # flags.mark_flag_as_required, and not empty
        cli.at_least("batch_size", 1)               # absl validator: checked while parsing, before any work

    def run_cli():                                  # what `python -m` and the console script (setup.py) both run
        define_flags()
        cli.run(main, "expr3d.synthesize")          # instead of app.run(main)

    if __name__ == "__main__":
        run_cli()

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

Quiet by default: TensorFlow's C++ start-up log and INFO log lines are hidden unless `--verbosity` asks for them;
`run` calls `quiet_start_up` right after parsing the flags (expr3d/quiet.py; also reachable as `cli.quiet_start_up`).
"""
import os
import re
import sys
import traceback

from expr3d import quiet as _quiet

# The quiet start-up lives in expr3d/quiet.py; its public names stay reachable as cli.* (run uses quiet_start_up).
QUIET_ENV, VERBOSE = _quiet.QUIET_ENV, _quiet.VERBOSE
drop_start_up_lines, quiet_start_up = _quiet.drop_start_up_lines, _quiet.quiet_start_up

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


def required(*names, flag_values=None):
    """`flags.mark_flags_as_required(names)`, and a string value may not be empty (`--output=`): the parse error
    reads `--name is required` / `flag --name=: must be a non-empty value`."""
    from absl import flags

    flags.mark_flags_as_required(list(names), flag_values=_flag_values(flag_values))
    for name in names:
        check(name, lambda v: not isinstance(v, str) or bool(v.strip()), "a non-empty value", flag_values=flag_values)


def required_unless(names, alternative, flag_values=None):
    """Like `required(*names)`, except when the boolean `--alternative` is given (e.g. `evaluate --list_metrics`
    needs no run): one absl multi-flag validator; the parse error reads `--name is required`."""
    from absl import flags

    def validate(values):
        if values[alternative]:
            return True
        missing = [name for name in names if values[name] is None or not str(values[name]).strip()]
        if missing:
            raise flags.ValidationError(f"--{missing[0]} is required")
        return True

    flags.register_multi_flags_validator(list(names) + [alternative], validate,
                                         flag_values=_flag_values(flag_values))


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


def defining_on(flag_values):
    """absl's `flags` module with every `DEFINE_*` bound to `flag_values` (None: the module itself, i.e. the global
    FLAGS), so a CLI's `define_flags` body can also define on a private FlagValues (in-process callers)."""
    import functools

    from absl import flags

    if flag_values is None:
        return flags

    class Defining:
        def __getattr__(self, name):
            value = getattr(flags, name)
            return functools.partial(value, flag_values=flag_values) if name.startswith("DEFINE") else value

    return Defining()


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

    `errors`: the command's own (exception class, code) pairs, checked first; a third element, when given, is a
    note appended to the message in parentheses (e.g. train's "the run resumes from its last checkpoint").
    """
    from absl import app, flags

    from expr3d.outputs import OutputError

    for kind, code, *_ in errors:
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
    from absl import flags

    if isinstance(error, flags.Error):  # a command line parsed in-process (e.g. the ablation's train flags)
        return "; ".join(_plain_flag_error(line.strip()) for line in str(error).splitlines() if line.strip())
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
    return call_reporting(lambda: main(argv), program, errors)[0]


def call_reporting(function, program, errors=()):
    """`function()` as `call` runs a command's main, returning (exit code, the one-line error message or "") so that
    a caller running several commands in-process (`expr3d.ablation`) can name what failed."""
    try:
        code = function()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        return fail(program, "interrupted", EXIT_SIGINT), "interrupted"
    except BaseException as error:  # noqa: BLE001 - every error is either mapped or reported as a bug
        if callable(errors):  # a function, so that the command's error classes are imported only when needed
            errors = errors()
        code = exit_code(error, errors)
        if code is None:
            traceback.print_exc()
            message = f"unexpected {type(error).__name__}: {one_line(error)}; {REPORT_BUGS}"
            return fail(program, message, EXIT_BUG), message
        if os.environ.get(TRACEBACK_ENV):
            traceback.print_exc()
        note = next((entry[2] for entry in errors if len(entry) > 2 and isinstance(error, entry[0])), None)
        message = _message(error) + (f" ({note})" if note else "")
        return fail(program, message, code), message
    return (EXIT_OK if code is None else int(code)), ""


def parse_flags(argv, program):
    """absl's flag parsing with a bad command line reported as one line and exit code 2 (instead of absl's
    two-line "FATAL Flags parsing error" and exit code 1)."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        # absl reports one line per broken flag; each made plain, then joined into one.
        text = "; ".join(_plain_flag_error(line.strip()) for line in str(error).splitlines() if line.strip())
        sys.exit(fail(program, text, EXIT_USAGE))


def _plain_flag_error(text):
    """One of absl's flag-error lines in plain words."""
    # mark_flag_as_required's wording ("flag --x=None: Flag --x must have a value other than None.") made plain.
    text = re.sub(r"^flag --([\w-]+)=None: Flag --\1 must have a value other than None\.", r"--\1 is required", text)
    # A validator's message that names its flag again ("flag --x=v: --x: ...") names it once.
    text = re.sub(r"^(flag --([\w-]+)=.*?): --\2:? ", r"\1: ", text)
    # required_unless's multi-flag validator ("flags x=None, y=False: --x is required"): the requirement only.
    return re.sub(r"^flags .*: (--[\w-]+ is required)$", r"\1", text)


def run(main, program, errors=()):
    """`absl.app.run(main)` with `parse_flags`, `quiet_start_up` and `call`: the one entry point of every expr3d
    command.

    Args:
        main: `main(argv) -> exit code or None`.
        program: the command's name in messages (e.g. "expr3d.lite").
        errors: the command's own (exception class, exit code[, note]) entries, checked before the shared table,
            or a function returning them (called on an error, so importing the classes costs nothing before).
    """
    from absl import app, flags

    def parse(argv):
        remaining = parse_flags(argv, program)
        quiet_start_up(flags.FLAGS["verbosity"].value if flags.FLAGS["verbosity"].present else None)
        return remaining

    def start(argv):
        if not flags.FLAGS["verbosity"].present:  # absl has just raised its default to INFO
            from absl import logging

            logging.set_verbosity(logging.WARNING)
        sys.exit(call(main, argv, program, errors))

    app.run(start, flags_parser=parse)
