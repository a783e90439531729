"""Strict templates: undefined names fail naming node, field and name; JSON output; a size cap."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nodes.base import NodeContext, RunInfo
from nodes.errors import TemplateError
from nodes.runtime import execute_node
from nodes.templating import MAX_RENDERED_CHARS, resolve


def ctx(**fields) -> NodeContext:
    return NodeContext(run=RunInfo(trace_id="t1", definition="test"), node_id="tell", **fields)


def test_an_undefined_name_fails_naming_node_field_and_name():
    with pytest.raises(TemplateError) as info:
        resolve({"message": "[{{ nodes.analyze.summry }}]"}, ctx(nodes={"analyze": {"summary": "s"}}))
    assert info.value.message == (
        "node 'tell' config.message: `nodes.analyze.summry` is undefined "
        "('dict object' has no attribute 'summry'); use `| default(...)` if it is optional"
    )
    with pytest.raises(TemplateError, match=r"config.title: `nothing` is undefined; use `\| default"):
        resolve({"title": "{{ nothing }}"}, ctx())
    with pytest.raises(TemplateError, match=r"`payload.flag` is undefined"):
        resolve({"title": "{% if payload.flag %}x{% endif %}"}, ctx())


def test_an_undefined_name_fails_the_node_run():
    with pytest.raises(TemplateError, match=r"^node 'tell' config.title: `payload.host` is undefined"):
        execute_node("tell", "notify", {"driver": "console", "title": "{{ payload.host }}"}, ctx())


def test_default_is_the_way_to_say_optional():
    got = resolve(
        {"a": "{{ nodes.gone.summary | default('n/a') }}", "b": "{% if payload.x is defined %}x{% endif %}"},
        ctx(nodes={"gone": None}),
    )
    assert got == {"a": "n/a", "b": ""}


def test_lists_and_objects_render_as_json():
    data = {"tags": ["a", "b"], "labels": {"sev": "high", "n": None, "ok": True}}
    assert resolve("{{ payload.tags }} {{ payload.labels }}", ctx(payload=data)) == (
        '["a", "b"] {"sev": "high", "n": null, "ok": true}'
    )


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'a' * 100000000 }}",
        "{{ [1, 2] * 100000000 }}",
        "{{ 'a'.ljust(100000000) }}",
        "{{ 'a' | center(100000000) }}",
        "{% for i in range(100000) %}{{ 'x' * 50 }}{% endfor %}",
        "{{ (['x' * 1000000] * 1000) | join }}",
        "{{ ','.join(['x' * 1000000] * 1000) }}",
        "{{ [['x' * 1000000]] * 1000 }}",
        "{{ ('a' * 1000000) | replace('a', 'aa') }}",
        "{{ ('a' * 1000).replace('a', 'a' * 1000000) }}",
        "{{ 'a' | indent(100000000) }}",
    ],
)
def test_rendered_output_is_capped(template):
    with pytest.raises(TemplateError, match=rf"config.message: rendered output over {MAX_RENDERED_CHARS}"):
        resolve({"message": template}, ctx())


@pytest.mark.parametrize(
    "template",
    [
        "{{ '%1000000000s' % 'a' }}",
        "{{ '%*s' % (1000000000, 'a') }}",
        "{{ '{:>1000000000}'.format('a') }}",
        "{{ '{:>{w}}'.format('a', w=1000000000) }}",
        "{{ '%1000000000s' | format('a') }}",
    ],
)
def test_huge_format_widths_are_refused(template):
    with pytest.raises(
        TemplateError, match="config.message: a format width or precision that large is refused"
    ):
        resolve({"message": template}, ctx())


@pytest.mark.parametrize("template", ["{{ cycler }}", "{{ payload.items }}", "{{ range }}"])
def test_printing_a_function_or_class_fails(template):
    with pytest.raises(TemplateError, match="is a function, not a value"):
        resolve({"message": template}, ctx(payload={"a": 1}))


def test_small_values_still_render():
    template = (
        "{{ 'ab' * 2 }} {{ [1] + [2] }} {{ '%3s|{:>3}'.format(1) % 'x' }} {{ 'a-b' | replace('-', '+') }}"
    )
    assert resolve(template, ctx()) == "abab [1, 2]   x|  1 a+b"


def test_a_gigabyte_template_is_refused_before_it_is_built():
    """Peak memory of a fresh interpreter stays far below the 1 GB each string would take."""
    templates = [
        "{{ 'a' * 1000000000 }}",
        "{{ '{:>1000000000}'.format('a') }}",
        "{{ ','.join(['x' * 1000000] * 1000) }}",
        "{{ ('a' * 1000).replace('a', 'a' * 1000000) }}",
    ]
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child forked from a big
    # pytest process would report the parent's size
    code = (
        "from nodes.templating import render_template\n"
        f"for template in {templates!r}:\n"
        "    try:\n"
        "        render_template(template, {})\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__)\n"
        "status = open('/proc/self/status').read()\n"
        "print(int(status.split('VmHWM:')[1].split()[0]) // 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    *names, peak_mb = out.stdout.split()
    assert names == ["TemplateError"] * len(templates)
    assert int(peak_mb) < 300


def test_a_dry_run_preview_shows_templates_it_cannot_render_yet():
    config = {"title": "Health check on {{ nodes.metrics.hostname }}", "message": "{{ payload.a }}"}
    assert resolve(config, ctx(payload={"a": 1}, dry_run=True)) == {
        "title": "Health check on {{ nodes.metrics.hostname }}",
        "message": "1",
    }
    with pytest.raises(TemplateError, match="`nodes.metrics` is undefined"):
        resolve(config, ctx(payload={"a": 1}))
