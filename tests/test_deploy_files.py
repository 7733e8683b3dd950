"""The deployment files agree with the code: manifest.yml, docker-compose.yml, Dockerfile,
.env.example and the README's configuration table.

These files are what an admin pastes or runs without reading the code, so each test checks
them against the code's own truth where it can (Settings fields and defaults, the listeners
the handlers register), not against a second copy of a list.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from bot.config import Settings
from bot.slack.server import SHUTDOWN_GRACE_S

ROOT = Path(__file__).resolve().parent.parent


def _yaml(name: str) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / name).read_text())
    assert isinstance(data, dict)
    return data


# --- manifest.yml ---------------------------------------------------------------------------

MANIFEST = _yaml("manifest.yml")

# What the Slack surfaces do needs these bot scopes (see the comments in manifest.yml).
NEEDED_SCOPES = {
    "app_mentions:read",
    "assistant:write",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "chat:write",
    "commands",
    "files:read",
    "files:write",
    "users:read",
    "im:write",
    "channels:read",
    "groups:read",
    "im:read",
}
NEEDED_EVENTS = {
    "app_mention",
    "message.im",
    "message.channels",
    "message.groups",
    "assistant_thread_started",
    "assistant_thread_context_changed",
    "app_home_opened",
}
# Web API methods the code calls -> the bot scope each needs. Checked only for methods that
# appear in the code, so a new call of a method listed here cannot ship without its scope.
METHOD_SCOPES = {
    "chat_postMessage": "chat:write",
    "chat_postEphemeral": "chat:write",
    "chat_update": "chat:write",
    "chat_startStream": "chat:write",
    "chat_appendStream": "chat:write",
    "chat_stopStream": "chat:write",
    "chat_stream": "chat:write",
    "users_info": "users:read",
    "conversations_open": "im:write",
    "conversations_replies": "channels:history",
    "conversations_info": "channels:read",
    "files_info": "files:read",
    "files_upload_v2": "files:write",
    "assistant_threads_setStatus": "assistant:write",
    "assistant_threads_setSuggestedPrompts": "assistant:write",
    "assistant_threads_setTitle": "assistant:write",
}


def _sources() -> str:
    files = [*ROOT.glob("handlers/*.py"), *ROOT.glob("bot/*.py"), *ROOT.glob("tools/*.py")]
    return "\n".join(p.read_text() for p in sorted(files))


def _bot_scopes() -> set[str]:
    return set(MANIFEST["oauth_config"]["scopes"]["bot"])


def _bot_events() -> set[str]:
    return set(MANIFEST["settings"]["event_subscriptions"]["bot_events"])


def test_manifest_has_the_bot_scopes() -> None:
    assert not NEEDED_SCOPES - _bot_scopes()


def test_manifest_subscribes_the_events() -> None:
    assert not NEEDED_EVENTS - _bot_events()


def test_manifest_covers_the_registered_listeners() -> None:
    source = _sources()
    events = set(re.findall(r"\.event\(\s*[\"']([a-z_]+)[\"']", source))
    for event in events - {"message"}:
        assert event in _bot_events(), f"@app.event({event!r}) without a subscription"
    if "message" in events or re.search(r"\.message\(", source):
        assert {"message.im", "message.channels"} <= _bot_events()
    commands = set(re.findall(r"\.command\(\s*[\"'](/[a-z_-]+)[\"']", source))
    declared = {c["command"] for c in MANIFEST["features"]["slash_commands"]}
    assert commands <= declared
    if re.search(r"\.(action|view|view_submission|block_action)\(", source):
        assert MANIFEST["settings"]["interactivity"]["is_enabled"] is True


def test_manifest_scopes_cover_the_web_api_calls() -> None:
    source = _sources()
    for method, scope in METHOD_SCOPES.items():
        if re.search(rf"\b{method}\(", source):
            assert scope in _bot_scopes(), f"{method} needs {scope}"


def test_manifest_slash_command() -> None:
    [command] = [c for c in MANIFEST["features"]["slash_commands"] if c["command"] == "/deepseek"]
    assert command["description"]
    assert "model" in command["usage_hint"] and "usage" in command["usage_hint"]
    assert len(command["description"]) <= 2000 and len(command["usage_hint"]) <= 1000


def test_manifest_interactivity_socket_mode_and_app_home() -> None:
    settings = MANIFEST["settings"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is True
    # Socket Mode: no request URLs (they are commented in, for HTTP mode).
    assert "request_url" not in settings["event_subscriptions"]
    home = MANIFEST["features"]["app_home"]
    assert home["home_tab_enabled"] is True
    assert home["messages_tab_enabled"] is True
    assert home["messages_tab_read_only_enabled"] is False
    assert MANIFEST["features"]["bot_user"]["display_name"]
    assert len(MANIFEST["display_information"]["name"]) <= 35


def test_manifest_agent_view() -> None:
    view = MANIFEST["features"]["agent_view"]
    assert view["agent_description"].strip()
    prompts = view["suggested_prompts"]
    assert 1 <= len(prompts) <= 4  # Slack shows at most four
    for prompt in prompts:
        assert set(prompt) == {"title", "message"}
        assert prompt["title"].strip() and prompt["message"].strip()
    # The README's rename for older apps must exist in the manifest's own comments too.
    assert "assistant_view" in (ROOT / "manifest.yml").read_text()


def test_manifest_http_mode_lines_point_at_slack_events() -> None:
    commented = re.findall(r"#\s*(?:url|request_url):\s*(\S+)", (ROOT / "manifest.yml").read_text())
    assert len(commented) == 3
    assert all(url == "https://HOST/slack/events" for url in commented)


# --- .env.example ---------------------------------------------------------------------------

_VAR = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")


def _env_example() -> tuple[list[str], dict[str, str]]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    values: dict[str, str] = {}
    for line in lines:
        match = _VAR.match(line)
        if match:
            assert match[1] not in values, f"{match[1]} twice in .env.example"
            values[match[1]] = match[2]
    return lines, values


FIELDS = sorted(Settings.model_fields)


@pytest.mark.parametrize("field", FIELDS)
def test_env_example_lists_every_setting_with_a_comment(field: str) -> None:
    lines, values = _env_example()
    name = field.upper()
    assert name in values, f"{name} missing from .env.example"
    [index] = [i for i, line in enumerate(lines) if (m := _VAR.match(line)) and m[1] == name]
    above = lines[index - 1]
    assert above.startswith("#") and not _VAR.match(above), f"{name} has no comment above it"
    assert len(above.lstrip("# ").strip()) > 10


def _is_unset_default(value: object) -> bool:
    return value is None or value == frozenset() or value == {}


@pytest.mark.parametrize("field", FIELDS)
def test_env_example_shows_the_real_default(field: str) -> None:
    """Where a setting has a default, the commented value is that default."""
    info = Settings.model_fields[field]
    default = info.get_default(call_default_factory=True)
    if _is_unset_default(default):
        return
    _, values = _env_example()
    parsed = Settings(_env_file=None, **{field: values[field.upper()]})  # type: ignore[call-arg]
    assert getattr(parsed, field) == default


def test_env_example_uncommented_is_valid(tmp_path: Path) -> None:
    """Uncommenting every line as it stands (defaults and examples) gives valid settings."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    env = tmp_path / ".env"
    env.write_text("\n".join(line[2:] for line in lines if _VAR.match(line)) + "\n")
    settings = Settings(_env_file=env)  # type: ignore[call-arg]
    assert settings.deepseek_prices["pro"].output > 0
    assert settings.admin_user_ids and settings.tools_disabled


def test_env_example_sets_nothing() -> None:
    """Every assignment is commented out: copying the file never sets an empty value."""
    for line in (ROOT / ".env.example").read_text().splitlines():
        assert not line.strip() or line.startswith("#"), line


# --- README ---------------------------------------------------------------------------------

README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("field", FIELDS)
def test_readme_configuration_table_lists_every_setting(field: str) -> None:
    assert re.search(rf"^\| `{field.upper()}` \|", README, re.M), f"{field.upper()} not in README"


def test_readme_keeps_the_two_commands() -> None:
    assert "bash scripts/setup.sh && .venv/bin/python -m bot\n" in README
    assert "bash scripts/test.sh\n" in README
    assert ".venv/bin/python -m bot chat" in README


# --- docker-compose.yml ---------------------------------------------------------------------

COMPOSE = _yaml("docker-compose.yml")


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def test_compose_redis_is_persistent() -> None:
    redis = COMPOSE["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    command = _command(redis)
    assert command[command.index("--appendonly") + 1] == "yes"
    [volume] = redis["volumes"]
    name, target = volume.split(":")[:2]
    assert target == "/data" and name in COMPOSE["volumes"]
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])


def test_compose_bot_uses_redis() -> None:
    bot = COMPOSE["services"]["bot"]
    assert bot["build"] == "."
    assert bot["env_file"] in (".env", [".env"])
    assert bot["environment"]["REDIS_URL"].startswith("redis://redis:6379")
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(bot["healthcheck"]["test"])
    # Longer than the bot's drain of answers in flight.
    assert int(bot["stop_grace_period"].rstrip("s")) > SHUTDOWN_GRACE_S


# --- Dockerfile -----------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_dockerfile_is_multi_stage_on_slim_python() -> None:
    froms = [rest for word, rest in _instructions() if word == "FROM"]
    assert len(froms) >= 2
    assert all(rest.startswith("python:3.11-slim") for rest in froms)
    assert any("pip wheel" in rest for word, rest in _instructions() if word == "RUN")


def test_dockerfile_runs_as_non_root_with_healthcheck() -> None:
    final = _final_stage()
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    [health] = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert "http://127.0.0.1:${PORT}/healthz" in health
    assert "python" in health
    [cmd] = [rest for word, rest in final if word == "CMD"]
    assert cmd == '["python", "-m", "bot"]'
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "LOG_FORMAT=json" in env


def test_dockerignore_keeps_secrets_and_envs_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored and ".venv" in ignored and ".git" in ignored


def test_settings_secrets_are_secret() -> None:
    """The README promises secrets are never logged: every token/key field is a SecretStr."""
    for name, info in Settings.model_fields.items():
        if name.endswith(("_token", "_key", "_secret")):
            assert SecretStr in getattr(info.annotation, "__args__", (info.annotation,)), name


# --- docs/deploy.md -------------------------------------------------------------------------


def _kubernetes() -> dict[str, dict[str, Any]]:
    text = (ROOT / "docs" / "deploy.md").read_text()
    [block] = re.findall(r"```yaml\n(.*?)```", text, re.S)
    return {doc["kind"]: doc for doc in yaml.safe_load_all(block)}


def test_kubernetes_example_probes_and_grace() -> None:
    k8s = _kubernetes()
    assert {"Deployment", "Service", "PodDisruptionBudget"} <= set(k8s)
    pod = k8s["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert "/healthz" in "\n".join(container["livenessProbe"]["exec"]["command"])
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pause + SHUTDOWN_GRACE_S
    assert pod["securityContext"]["runAsNonRoot"] is True
    labels = k8s["Deployment"]["spec"]["selector"]["matchLabels"]
    assert k8s["Service"]["spec"]["selector"] == labels
    assert k8s["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels


def test_deploy_doc_keeps_the_drills_section() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    section = text.split("## What the drills show", 1)[1]
    assert "bench/README.md" in section
    assert "TODO" not in text
