"""expr3d.cli: the error-to-exit-code table, one-line messages, bugs reported with their traceback."""
import errno

import pytest

from expr3d import cli, outputs


def call(capsys, error, errors=()):
    def main(argv):
        raise error

    code = cli.call(main, ["prog"], "expr3d.tool", errors)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("error, code, text", [
    (cli.UsageError("--x must be >= 1"), cli.EXIT_USAGE, "expr3d.tool: error: --x must be >= 1\n"),
    (outputs.OutputError("--output=o holds a.png"), cli.EXIT_ERROR, "expr3d.tool: error: --output=o holds a.png\n"),
    (FileNotFoundError("--data_dir=d does not exist"), cli.EXIT_ERROR, "expr3d.tool: error: --data_dir=d does not exist\n"),
    (ValueError("bad.png: not an image\n  (detail)"), cli.EXIT_ERROR, "expr3d.tool: error: bad.png: not an image; (detail)\n"),
    (OSError(errno.ENOSPC, "No space left on device", "/out/x.tfrecord"), cli.EXIT_ERROR,
     "expr3d.tool: error: /out/x.tfrecord: No space left on device\n"),
    (cli.NothingDone("no photo translated: 2 without a face"), cli.EXIT_ERROR,
     "expr3d.tool: error: no photo translated: 2 without a face\n"),
    (KeyboardInterrupt(), cli.EXIT_SIGINT, "expr3d.tool: error: interrupted\n"),
])
def test_expected_errors_are_one_line_with_their_code(capsys, error, code, text):
    assert call(capsys, error) == (code, text)


def test_a_command_maps_its_own_errors_first(capsys):
    class Stopped(Exception):
        pass

    assert call(capsys, Stopped("loss is NaN"), errors=[(Stopped, 3)]) == (3, "expr3d.tool: error: loss is NaN\n")


def test_an_unexpected_error_is_a_bug_with_its_traceback(capsys):
    code, err = call(capsys, KeyError("g_rgb"))
    assert code == cli.EXIT_BUG == 70
    assert err.startswith("Traceback (most recent call last):") and "KeyError: 'g_rgb'" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("expr3d.tool: error: unexpected KeyError: 'g_rgb'; this is a bug in expr3d")
    assert "report it" in last


def test_a_traceback_for_expected_errors_on_request(capsys, monkeypatch):
    monkeypatch.setenv(cli.TRACEBACK_ENV, "1")
    code, err = call(capsys, ValueError("bad"))
    assert code == 1 and "Traceback" in err and err.endswith("expr3d.tool: error: bad\n")


def test_tensorflow_data_errors_are_one_line_without_graph_locations(capsys):
    tf = pytest.importorskip("tensorflow")
    error = tf.errors.DataLossError(None, None, "corrupted record at 12 in data/train-00001.tfrecord\n\t [[{{node "
                                                "IteratorGetNext}}]] [Op:IteratorGetNext]")
    code, err = call(capsys, error)
    assert code == cli.EXIT_ERROR
    assert err == ("expr3d.tool: error: TensorFlow could not read the data (DataLossError): corrupted record at 12 "
                   "in data/train-00001.tfrecord\n")
    code, err = call(capsys, tf.errors.UnimplementedError(None, None, "no kernel"))
    assert code == cli.EXIT_BUG  # not a data error: a bug


def test_main_return_values(capsys):
    assert cli.call(lambda argv: None, ["p"], "t") == 0
    assert cli.call(lambda argv: 3, ["p"], "t") == 3
    with pytest.raises(SystemExit):
        cli.call(lambda argv: exit(4), ["p"], "t")
    with pytest.raises(cli.UsageError, match="unexpected argument"):
        cli.no_arguments(["prog", "extra"])
    cli.no_arguments(["prog"])


def test_the_exit_code_table_is_documented():
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "reliability.md"), encoding="utf-8") as handle:
        text = handle.read()
    for code in cli.EXIT_CODES:
        assert f"| {code} |" in text, code
