"""ssh command placeholders where bash evaluates a word itself (arithmetic, variable names,
subscripts): quoting cannot protect a value there, so only a plain number or name is let in.
Operator words (``!``, ``(``) standing where an operand is expected are refused too."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.core.secrets import Secrets
from engine.core.shell import UnsafeShellValueError, render_shell
from engine.core.templating import Scope

BASH = shutil.which("bash")
ARITHMETIC = [
    "[[ 5 -gt {{n}} ]] && echo yes",
    "[[ {{n}} -eq 1 ]] || echo no",
    'if [[ "{{n}}" -lt 3 ]]; then echo y; fi',
    "[[ -n x && 2 -ge '{{n}}' ]]",
    "(( {{n}} > 1 )) || true",
    "for (( i = 0; i < {{n}}; i++ )); do :; done",
    "let x={{n}}+1",
    "declare -i x={{n}}",
    "declare -i x; x={{n}}",
    "f() { local -i x={{n}}; }; f",
    "[[ -v {{n}} ]] || true",
    "test -v {{n}} || true",
    "[ -v '{{n}}' ] || true",
    "printf -v {{n}} %s x",
    "printf -v 'a[{{n}}]' %s x",
    "read {{n}} <<< x",
    "arr[{{n}}]=1",
    "declare {{n}}=1",
    "unset {{n}}",
    'echo "$(let y={{n}})"',
    "bash -c '[[ 5 -gt {{n}} ]]'",
    "sudo -n sh -c 'echo {{n}}'",
    "eval echo {{n}}",
    "x=$(( 1 )); echo {{n}}",  # after $((: refused as before, whatever the value
]


def _attack(marker: Path) -> str:
    return f"a[$(touch {marker})]"


@pytest.mark.parametrize("template", ARITHMETIC)
def test_a_value_in_an_arithmetic_or_name_context_must_be_a_plain_number_or_name(
        template: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(UnsafeShellValueError, match=r"\{\{n\}\}") as caught:
        render_shell(template, Scope({"n": _attack(marker)}))
    assert "touch" not in str(caught.value)
    if "$((" in template:
        return
    for plain in (3, "7", "count", -2 if template.startswith("let") else 4):
        render_shell(template, Scope({"n": plain}))  # plain numbers and names still pass


@pytest.mark.skipif(BASH is None, reason="bash not installed")
@pytest.mark.parametrize("template", [t for t in ARITHMETIC if "$((" not in t and not t.startswith("unset")])
def test_quoting_alone_does_not_protect_these_contexts_in_bash(template: str, tmp_path: Path) -> None:
    """The reason for the rule: the value quoted as one word still runs its command."""
    marker = tmp_path / "pwned"
    quoted = template.replace("{{n}}", shlex.quote(_attack(marker)))
    subprocess.run([BASH, "-c", quoted], capture_output=True, timeout=10, cwd=tmp_path)  # type: ignore[list-item]
    assert marker.exists(), quoted


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_plain_values_work_in_bash(tmp_path: Path) -> None:
    command = render_shell("declare -i x={{n}}; (( x > 2 )) && [[ {{n}} -ge 3 ]] && echo $x", Scope({"n": 5}))
    done = subprocess.run([BASH, "-c", command], capture_output=True, text=True, timeout=10, check=True)
    assert done.stdout == "5\n"


def test_ordinary_words_keep_any_value() -> None:
    secrets = Secrets({"dbPass": "pa$$w(0)rd[$(x)]"})
    scope = Scope({"dbUser": "admin"}, secrets=secrets)
    command = render_shell("mysqldump -u {{dbUser}} -p{{dbPass}} db", scope)
    assert shlex.split(command) == ["mysqldump", "-u", "admin", "-ppa$$w(0)rd[$(x)]", "db"]
    # Beside a test operator that is not arithmetic, a value is an ordinary word.
    assert shlex.split(render_shell("[[ {{v}} == prod ]]", Scope({"v": "a[$(id)]"})))[1] == "a[$(id)]"
    assert shlex.split(render_shell("printf '%s' {{v}}", Scope({"v": "a[$(id)]"})))[2] == "a[$(id)]"


@pytest.mark.parametrize("value", ["!", "(", ")", ",", "{}", "=", "!="])
@pytest.mark.parametrize("template", ["find {{dir}} -delete", "find '{{dir}}' -name x -delete",
                                      "test {{dir}} = x"])
def test_an_operator_word_where_an_operand_is_expected_is_refused(template: str, value: str) -> None:
    with pytest.raises(UnsafeShellValueError, match=r"\{\{dir\}\} stands where an operand"):
        render_shell(template, Scope({"dir": value}))


def test_an_operator_character_inside_a_longer_word_is_fine() -> None:
    assert shlex.split(render_shell("find {{dir}} -delete", Scope({"dir": "./a!b(c)"})))[1] == "./a!b(c)"
    assert shlex.split(render_shell("find /tmp/{{dir}} -delete", Scope({"dir": "!"})))[1] == "/tmp/!"


@pytest.mark.skipif(shutil.which("find") is None, reason="find not installed")
def test_the_find_operator_attack_is_real(tmp_path: Path) -> None:
    """With dir = "!", `find ! -delete` deletes everything but what matched (the reason for the rule)."""
    (tmp_path / "keep").write_text("x")
    subprocess.run(["find", ".", "!", "-name", ".", "-delete"], cwd=tmp_path, check=True)
    assert not (tmp_path / "keep").exists()
