"""Messages that help: a misspelt argument gets a did-you-mean, a model with more inputs than one image is
pointed at --inputs, an unannotated argument shows its default's type, `list` says what "seed" means."""

from __future__ import annotations

import textwrap

import pytest
from conftest import REPO

TWO_INPUTS = textwrap.dedent("""
    from torch import nn

    class Two(nn.Module):
        def __init__(self, width=4):  # unannotated on purpose
            super().__init__()
            self.conv = nn.Conv2d(3, width, 3)
            self.head = nn.Linear(4, 4)

        def forward(self, image, mask):
            return self.conv(image).mean() + self.head(mask).mean()
""")


def test_a_misspelt_argument_gets_a_did_you_mean(cli):
    result = cli("summary", f"{REPO}/examples/mynet.py:MyNet", "--set", "widht=2")
    assert result.exit_code == 2
    assert "has no argument 'widht'. Did you mean 'width'? Valid arguments: width: int" in result.stderr


def test_a_model_with_two_inputs_is_pointed_at_inputs_and_unannotated_arguments_show_their_default(cli, tmp_path):
    (tmp_path / "two.py").write_text(TWO_INPUTS)
    result = cli("summary", f"{tmp_path}/two.py:Two", "--input", "3x16x16")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "missing 1 required positional argument: 'mask'" in result.stderr
    assert "give them with --inputs FILE.py:factory" in result.stderr
    wrong = cli("summary", f"{tmp_path}/two.py:Two", "--set", "depth=2")
    assert "Valid arguments: width: int (from its default)." in wrong.stderr


def test_list_explains_seed(cli):
    result = cli("list", "mnist-cnn")
    assert result.exit_code == 0
    assert "seed 002" in result.stdout and "seed NNN: the source document a built-in spec was written from" in result.stdout


@pytest.mark.parametrize("argv, message", [
    (("check", "mnist-cnn", "--source", "x" * 5000), "--source 'xxxx"),
    (("list", "--source", "x" * 5000), "--source 'xxxx"),
    (("check", "mnist-cnn", "--specs", "x" * 5000), "cannot be read: File name too long (errno 36, ENAMETOOLONG)"),
    (("compare", "mnist-cnn", "--batch", "1", "--max-time", "0.05", "--no-db", "--out", "x" * 5000),
     "cannot write the report to 'xxxx"),  # the plan line before it quoted the folder in full
])
def test_a_long_bad_value_is_echoed_short(cli, argv, message):
    """Found by the fuzzer: a 5,000-character --source was echoed in full; a --specs folder whose name is too
    long for the file system escaped as an OSError (a traceback)."""
    result = cli(*argv)
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "Traceback" not in result.output, said[:500]
    assert message in said and "…' (5,000 characters)" in said and "x" * 300 not in said and len(said) < 900, said[:900]


@pytest.mark.parametrize("argv", [("history", "mnist-cnn"), ("report", "1"), ("diff", "1", "2"), ("collect", "1")])
@pytest.mark.parametrize("db", ["1" * 5000, "b" * 300 + ".db"])
def test_a_db_name_too_long_for_the_system_is_a_message(cli, argv, db):
    """Found by the fuzzer (long profile): `history mnist-cnn --db <5,000 digits>` escaped as an OSError (errno
    36) from the read-only store's is_dir(), `report 1 --db <300 characters>` from the profile look-up's."""
    result = cli(*argv, "--db", db)
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "Traceback" not in result.output, said[:500]
    assert said.startswith("error: --db: cannot use '") and "as a results store: " in said, said[:500]
    assert "allows paths of at most" in said or "allows names of at most" in said
    assert db not in said and len(said) < 600


def test_the_store_opened_read_only_refuses_a_name_too_long_with_its_error():
    """The library side of the finding above (the Python API reaches it without the CLI's --db check)."""
    from archbench.errors import StoreError
    from archbench.results.store import Store

    with pytest.raises(StoreError, match=r"as a results store: the path is 5,0\d\d bytes long"):
        Store.open("1" * 5000, readonly=True)


def _echoed_short(call) -> str:
    from archbench.errors import ArchbenchError

    with pytest.raises(ArchbenchError) as caught:
        call()
    said = str(caught.value)
    assert "…' (5,000 characters)" in said and "x" * 300 not in said and len(said) < 900, said[:900]
    return said


def test_library_messages_echo_a_long_user_value_short(tmp_path):
    """The optimizer name, a mode, an unknown run store's path and a diff side's label are quoted short
    (errors.quoted), whatever their length."""
    from archbench.diff.runs import RunData, diff_runs
    from archbench.memory_estimate import estimate_step_memory
    from archbench.sweep.cells import _check_values

    long = "x" * 5000
    said = _echoed_short(lambda: estimate_step_memory(lambda: None, lambda b: None, name="m", input="3x8x8", batch=1,
                                                      optimizer=long))
    assert said.startswith("optimizer 'xxx")
    assert _echoed_short(lambda: _check_values([1], [long], ["fp32"], [None])).startswith("mode 'xxx")
    empty = RunData(long, [])
    assert "have no cell in common" in _echoed_short(lambda: diff_runs(empty, empty))
