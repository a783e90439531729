"""The standards test: every member of the four registries meets its `nodes.protocols` Protocol
and the house rules (documented, forbidding config, secrets as SecretStr), and a broken member fails."""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

import nodes
import nodes.ingest
import nodes.intelligence
import nodes.notify
from nodes.errors import DefinitionError
from nodes.protocols import Driver, Format, NodeType, Provider

# a field named so holds a credential, unless it says where a service is
SECRET_NAMES = {"url", "token", "password", "secret", "api_key", "routing_key", "headers"}
SECRET_ENDINGS = ("_url", "_token", "_password", "_secret", "_api_key")
ENDPOINTS = {"api_url", "base_url", "events_url", "prometheus_url", "alertmanager_url"}
PROBE_KEY = "opsflow_standards_probe"


@dataclass(frozen=True)
class Registry:
    """One registry and the rules that differ between registries."""

    kind: str  # as its "unknown ..." error names it
    members: dict[str, str]
    get: Callable[[Any], Any]
    protocol: type
    word: str  # a member's purpose line starts "`name` <word>"
    entry: str | None  # the callable whose docstring says why (a node type's purpose line does)
    leaf: bool  # its configs hand no keys on to another registry: every model forbids extras
    max_lines: int = 400
    optional_calls: dict[str, int] = field(default_factory=dict)  # name: positional arguments
    optional_values: dict[str, type] = field(default_factory=dict)
    rules: Callable[[str, Any], list[str]] | None = None


def _driver_rules(name: str, member: Any) -> list[str]:
    if name == "console":  # printing cannot hang; every other driver talks to a server
        return []
    timeout = member.Config.model_fields.get("timeout_seconds")
    return [] if timeout is not None and timeout.default == 10 else ["Config.timeout_seconds: default 10"]


REGISTRIES = [
    Registry(
        "node type",
        nodes.NODE_TYPES,
        nodes.get_node_type,
        NodeType,
        "node",
        entry=None,
        leaf=False,
        optional_calls={"resolve_config": 2, "preview": 2, "required_settings": 1},
    ),
    Registry(
        "notify driver",
        nodes.notify.DRIVERS,
        nodes.notify.get_driver,
        Driver,
        "driver",
        entry="send",
        leaf=True,
        rules=_driver_rules,
    ),
    Registry(
        "intelligence provider",
        nodes.intelligence.PROVIDERS,
        nodes.intelligence.get_provider,
        Provider,
        "provider",
        entry="analyze",
        leaf=True,
        optional_values={"API_KEY_ENV": str},
    ),
    Registry(
        "ingest format",
        nodes.ingest.FORMATS,
        nodes.ingest.get_format,
        Format,
        "format",
        entry="parse",
        leaf=True,
        max_lines=200,
    ),
]
BY_KIND = {registry.kind: registry for registry in REGISTRIES}
MEMBERS = [(registry.kind, name) for registry in REGISTRIES for name in registry.members]


def problems(registry: Registry, name: str) -> list[str]:
    """Every rule `name` breaks, as one line each (empty when it meets the standard)."""
    member = registry.get(name)
    if not isinstance(member, registry.protocol):
        missing = [m for m in _protocol_members(registry.protocol) if not hasattr(member, m)]
        return [f"not a {registry.protocol.__name__}: no {', '.join(missing)}"]
    found = _signature_problems(registry, member) + _module_problems(registry, name, member)
    config = member.Config
    if isinstance(config, type) and issubclass(config, BaseModel):
        found += _config_problems(registry, config)
    if registry.rules:
        found += registry.rules(name, member)
    return found


def _protocol_calls(protocol: type) -> list[str]:
    return sorted(n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_"))


def _protocol_members(protocol: type) -> list[str]:
    return sorted({*_protocol_calls(protocol), *protocol.__annotations__})


def _signature_problems(registry: Registry, member: Any) -> list[str]:
    found = []
    for attr, hint in typing.get_type_hints(registry.protocol).items():
        value = getattr(member, attr)
        if typing.get_origin(hint) is type:
            if not (isinstance(value, type) and issubclass(value, BaseModel)):
                found.append(f"{attr}: not a pydantic model")
        elif not isinstance(value, hint) or value == "":
            found.append(f"{attr}: expected a {hint.__name__}, got {value!r}")
    for attr in _protocol_calls(registry.protocol):
        expected = list(inspect.signature(getattr(registry.protocol, attr)).parameters.values())[1:]
        signature = inspect.signature(getattr(member, attr))
        got = list(signature.parameters.values())
        if [(p.name, p.kind) for p in got] != [(p.name, p.kind) for p in expected]:
            found.append(f"{attr}{_shown(got)}: expected {attr}{_shown(expected)}")
        else:
            found += [
                f"{attr}: `{p.name}` needs a default"
                for p, mine in zip(expected, got, strict=True)
                if p.default is not p.empty and mine.default is mine.empty
            ]
    for attr, count in registry.optional_calls.items():
        if hasattr(member, attr):
            try:
                inspect.signature(getattr(member, attr)).bind(*range(count))
            except TypeError as exc:
                found.append(f"{attr}: cannot be called with {count} argument(s): {exc}")
    for attr, kind in registry.optional_values.items():
        if hasattr(member, attr) and not isinstance(getattr(member, attr), kind):
            found.append(f"{attr}: expected a {kind.__name__}")
    if registry.entry and not (getattr(member, registry.entry).__doc__ or "").strip():
        found.append(f"{registry.entry}: no docstring")
    return found


def _shown(parameters: list[inspect.Parameter]) -> str:
    """`(config, ctx, prompt, *, client=None)`: names, kinds and defaults, no annotations."""
    return str(inspect.Signature([p.replace(annotation=p.empty) for p in parameters]))


def _module_problems(registry: Registry, name: str, member: Any) -> list[str]:
    module = member if inspect.ismodule(member) else inspect.getmodule(member)
    found = []
    lines = (getattr(module, "__doc__", None) or "").strip().splitlines()
    if not lines or not lines[0].startswith(f"`{name}` {registry.word}"):
        found.append(f"module docstring: the purpose line starts with '`{name}` {registry.word}'")
    size = len(inspect.getsource(module).splitlines())
    if size >= registry.max_lines:
        found.append(f"module: {size} lines, the limit is {registry.max_lines}")
    return found


def _config_problems(registry: Registry, config: type[BaseModel]) -> list[str]:
    found = []
    for model in _models(config):
        where = model.__qualname__
        if not (model.__doc__ or "").strip():
            found.append(f"{where}: no docstring")
        extra = model.model_config.get("extra")
        # pydantic's default drops a mistyped key silently; "allow" hands keys on (notify → driver)
        if extra != "forbid" and (registry.leaf or extra != "allow"):
            found.append(f"{where}: extra={extra!r}, not 'forbid'")
        found += [f"{where}.{n}: no description" for n, f in model.model_fields.items() if not f.description]
    for name, info in config.model_fields.items():
        secret = name not in ENDPOINTS and (name in SECRET_NAMES or name.endswith(SECRET_ENDINGS))
        if secret and not _mentions(info.annotation, SecretStr):
            found.append(f"Config.{name}: a credential, should be a SecretStr")
    try:
        config.model_validate({PROBE_KEY: 1})
        found.append(f"Config accepts an unknown key ({PROBE_KEY})")
    except ValidationError as exc:
        if PROBE_KEY not in str(exc):
            found.append(f"Config: an unknown key is not named in the error: {exc}")
    return found


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """`model` and every model its fields reach (lists, unions, dicts of models)."""
    seen: list[type[BaseModel]] = []

    def walk(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in seen:
                seen.append(annotation)
                for info in annotation.model_fields.values():
                    walk(info.annotation)
            return
        for arg in typing.get_args(annotation):
            walk(arg)

    walk(model)
    return seen


def _mentions(annotation: Any, kind: type) -> bool:
    return annotation is kind or any(_mentions(arg, kind) for arg in typing.get_args(annotation))


def lookup_problems(registry: Registry) -> list[str]:
    """An unknown name (or no name) is a DefinitionError that lists every known one."""
    found = []
    known = ", ".join(sorted(registry.members))
    for wrong in ("no-such-member", None, ["unhashable"]):
        want = f"unknown {registry.kind} {wrong!r} (known: {known})"
        try:
            registry.get(wrong)
            found.append(f"{wrong!r}: no error")
        except DefinitionError as exc:
            if str(exc) != want:
                found.append(f"{wrong!r}: {exc} (expected: {want})")
    return found


# -- the standard ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "name"), MEMBERS, ids=[f"{k}:{n}" for k, n in MEMBERS])
def test_member_meets_the_standard(kind, name):
    found = problems(BY_KIND[kind], name)
    assert not found, f"{kind} {name!r}:\n  " + "\n  ".join(found)


@pytest.mark.parametrize("kind", list(BY_KIND))
def test_an_unknown_name_lists_the_known_ones(kind):
    found = lookup_problems(BY_KIND[kind])
    assert not found, f"{kind}:\n  " + "\n  ".join(found)


# -- the test of the test: broken members fail it ----------------------------------------------

GOOD_DRIVER = '''\
"""`probe` driver: delivers nothing; a member that meets the standard, to break one rule at a time."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

HTTP = False


class Config(BaseModel):
    """Where to deliver."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: SecretStr | None = Field(default=None, description="Where to post.")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per-request timeout in seconds.")


def send(config, message, ctx, client=None) -> dict[str, Any]:
    """Deliver nothing."""
    return {}


def preview(config, message) -> dict[str, Any]:
    return {}
'''

GOOD_NODE_TYPE = '''\
"""`probe` node: outputs nothing; a member that meets the standard, to break one rule at a time."""

from pydantic import BaseModel, ConfigDict, Field


class Config(BaseModel):
    """Nothing to set but a word."""

    model_config = ConfigDict(extra="forbid")

    word: str = Field(default="", description="A word.")


def run(config, ctx):
    return {}


def preview(config, ctx):
    return []
'''

GOOD_PROVIDER = '''\
"""`probe` provider: analyses nothing; a member that meets the standard, to break one rule at a time."""

from pydantic import BaseModel, ConfigDict, Field, SecretStr

USES_PROMPT = True
API_KEY_ENV = "PROBE_API_KEY"


class Config(BaseModel):
    """The key."""

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr | None = Field(default=None, description="API key; default: PROBE_API_KEY.")


def analyze(config, ctx, prompt, *, client=None):
    """Say nothing."""
    return {}
'''

GOOD_FORMAT = '''\
"""`probe` format: matches nothing; a member that meets the standard, to break one rule at a time."""

from pydantic import BaseModel, ConfigDict

SHAPE = "nothing at all"


class Config(BaseModel):
    """No settings."""

    model_config = ConfigDict(extra="forbid")


def detect(payload):
    return False


def parse(payload, config=None):
    """No alerts."""
    return None
'''

GOOD = {
    "notify driver": GOOD_DRIVER,
    "node type": GOOD_NODE_TYPE,
    "intelligence provider": GOOD_PROVIDER,
    "ingest format": GOOD_FORMAT,
}
BROKEN = [
    # (registry, what to replace in its good member, with what, the problem that must be found)
    ("notify driver", "`probe` driver:", "A driver:", "purpose line"),
    ("notify driver", 'extra="forbid"', 'extra="ignore"', "extra='ignore'"),
    ("notify driver", ', description="Where to post."', "", "webhook_url: no description"),
    ("notify driver", "webhook_url: SecretStr", "webhook_url: str", "should be a SecretStr"),
    ("notify driver", '    """Where to deliver."""\n', "", "Config: no docstring"),
    ("notify driver", "HTTP = False", 'HTTP = "no"', "HTTP: expected a bool"),
    ("notify driver", "HTTP = False", "", "not a Driver: no HTTP"),
    ("notify driver", "def preview", "def show", "not a Driver: no preview"),
    ("notify driver", "send(config, message,", "send(config, msg,", "expected send(config, message"),
    ("notify driver", "client=None)", "client)", "`client` needs a default"),
    ("notify driver", '"""Deliver nothing."""', "pass", "send: no docstring"),
    ("notify driver", "default=10.0", "default=30.0", "timeout_seconds: default 10"),
    ("notify driver", "", "\n" * 400, "the limit is 400"),
    ("node type", 'extra="forbid"', 'extra="allow"', "accepts an unknown key"),
    ("node type", "def preview(config, ctx)", "def preview(config)", "cannot be called with 2"),
    ("node type", "def run(config, ctx)", "def run(config)", "expected run(config, ctx)"),
    ("intelligence provider", "`probe` provider", "`probe` node", "starts with '`probe` provider'"),
    (
        "intelligence provider",
        'API_KEY_ENV = "PROBE_API_KEY"',
        "API_KEY_ENV = 1",
        "API_KEY_ENV: expected a str",
    ),
    ("intelligence provider", "USES_PROMPT = True", "", "not a Provider: no USES_PROMPT"),
    ("intelligence provider", "*, client=None", "client=None", "expected analyze(config, ctx, prompt, *,"),
    ("ingest format", 'SHAPE = "nothing at all"', 'SHAPE = ""', "SHAPE: expected a str, got ''"),
    ("ingest format", 'extra="forbid"', 'extra="allow"', "extra='allow', not 'forbid'"),
    ("ingest format", "config=None", "config", "`config` needs a default"),
    ("ingest format", "", "\n" * 200, "the limit is 200"),
]


@pytest.fixture
def register(tmp_path, monkeypatch):
    """Register source text as the member `probe` of a registry, importable from a real file."""
    monkeypatch.syspath_prepend(str(tmp_path))
    made: list[str] = []

    def register_as(kind: str, source: str) -> None:
        module = f"standards_probe_{len(made)}"
        (tmp_path / f"{module}.py").write_text(source)
        monkeypatch.setitem(BY_KIND[kind].members, "probe", module)
        made.append(module)

    yield register_as
    for module in made:
        sys.modules.pop(module, None)


@pytest.mark.parametrize("kind", list(GOOD))
def test_the_unbroken_probes_meet_the_standard(register, kind):
    register(kind, GOOD[kind])
    test_member_meets_the_standard(kind, "probe")


@pytest.mark.parametrize(("kind", "old", "new", "problem"), BROKEN, ids=[c[3] for c in BROKEN])
def test_a_broken_member_fails_the_standard(register, kind, old, new, problem):
    assert old in GOOD[kind]
    register(kind, GOOD[kind].replace(old, new, 1))
    with pytest.raises(AssertionError) as info:
        test_member_meets_the_standard(kind, "probe")
    assert problem in str(info.value)


def test_a_registry_whose_miss_does_not_list_the_known_names_fails(monkeypatch):
    monkeypatch.setattr(nodes.notify, "unknown_name", lambda kind, name, known: f"no {kind} {name!r}")
    expected = "expected: unknown notify driver 'no-such-member' .known: console"
    with pytest.raises(AssertionError, match=expected):
        test_an_unknown_name_lists_the_known_ones("notify driver")
