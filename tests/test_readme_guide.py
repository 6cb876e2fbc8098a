"""The README's "Attach driftline to your own model in 10 minutes" runs as written.

How the guide's commands are found and run:

* Every fenced ``bash`` block of that section is split into commands. A command is one line, plus
  the lines it continues onto (``\\``), plus a heredoc's body (``<<'EOF'`` ... ``EOF``), plus a
  ``for ... do`` loop's lines up to ``done``. Comment-only lines are not commands.
* A comment starts at two spaces and ``#``. ``# check: TEXT`` in it is what the command's output
  (stdout and stderr) must contain, where ``...`` in TEXT stands for any text.
* A block whose first line is ``# on your cluster`` needs a cluster: its commands are not run, and
  they must be exactly ``CLUSTER_COMMANDS``. The setup commands of step 1 (``SETUP_COMMANDS``) are
  not run either: this test runs in the environment they install. Every other command runs, in
  order, in one bash shell with ``set -e``, in a temporary directory that stands for the user's
  clone (``k8s/`` and ``alerts/`` link to this repository's) and with this venv first on PATH.
* The user's files are stood in for by ``SUBSTITUTIONS``: the sample flights for the training data,
  ``k8s/examples/my-model.yaml`` for the model's manifest; and the receiver rehearsed in step 8
  listens on a free port instead of 9095.

A command added to the guide therefore runs here, unless it is added to a cluster block and to
``CLUSTER_COMMANDS``; either way, this test notices.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.wire.decode import decode_labels

ROOT = Path(__file__).resolve().parent.parent
TITLE = "## Attach driftline to your own model in 10 minutes"
CLUSTER_MARK = "# on your cluster"

SUBSTITUTIONS = {
    "/path/to/your/train.parquet": str(ROOT / "sample_data/flights/reference.parquet"),
    "/path/to/your/deployment.yaml": str(ROOT / "k8s/examples/my-model.yaml"),
}
REHEARSAL_PORT = "9095"  # replaced by a free port in the commands that run

SETUP_COMMANDS = [
    "python3 -m venv .venv && . .venv/bin/activate",
    "pip install .",
]

CLUSTER_COMMANDS = [
    # step 3: topics, the monitor
    "for topic in driftline.predictions driftline.labels driftline.dlq; do\n"
    "  kafka-topics.sh --bootstrap-server kafka.kafka.svc:9092 --create --if-not-exists --topic $topic"
    " --partitions 4 --replication-factor 3\n"
    "done",
    "kafka-topics.sh --bootstrap-server kafka.kafka.svc:9092 --create --if-not-exists --topic driftline.state"
    " --partitions 4 --replication-factor 3 --config cleanup.policy=compact"
    " --config max.message.bytes=67108864",
    "kubectl apply --server-side -k my-model",
    "kubectl -n driftline rollout status deploy/driftline-monitor",
    "kubectl -n driftline port-forward svc/driftline-monitor 8000:8000 &",
    "curl -s localhost:8000/models",
    # step 4: the sidecar
    "kubectl apply -f my-model/deployment.yaml",
    "kubectl -n ml rollout status deploy/my-model",
    "curl -s localhost:8000/metrics | grep '^driftline_events_total{model=\"my-model\"}'",
    # step 5: labels
    "curl -s -X POST localhost:8000/labels -H 'Content-Type: application/json' -d '{\"schema\": 1, "
    "\"model\": \"my-model\", \"labels\": [{\"request_id\": \"REQUEST-ID\", \"ts\": 1765000000000, "
    "\"target\": 1}]}'",
    # step 6: rules
    "kubectl get prometheus -A -o jsonpath='{..ruleSelector}'",
    "kubectl apply -f my-model/prometheusrule.yaml",
    # step 7: dashboards
    "kubectl apply -f my-model/dashboards-configmap.yaml",
    "driftline dashboards push -C my-model/driftline.yaml --url https://grafana.example"
    " --token-file grafana-token --datasource-uid prometheus",
    # step 8: the receiver
    "kubectl -n driftline create secret generic driftline-remediate-token --from-file=token=my-model/token",
    "kubectl -n monitoring create secret generic driftline-remediate --from-file=token=my-model/token",
    "kubectl apply --server-side -k my-model",
    "kubectl -n driftline port-forward svc/driftline-remediate 9095:9095 &",
    "curl -s 'localhost:9095/actions?model=my-model'",
]

TOOLS = ("kubectl", "promtool", "amtool", "curl")


@dataclass(frozen=True)
class Command:
    text: str  # as written: continuation lines and heredoc bodies included
    head: str  # without comments and heredoc bodies: what the lists above name
    checks: tuple[str, ...]
    cluster: bool


def guide() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(TITLE)
    end = readme.find("\n## ", start + len(TITLE))
    return readme[start:end if end >= 0 else len(readme)]


def split_comment(line: str) -> tuple[str, str]:
    code, sep, comment = line.partition("  #")
    return code.rstrip(), comment if sep else ""


def commands_of(block: str, cluster: bool) -> list[Command]:
    lines = block.splitlines()
    commands: list[Command] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        own = [line]  # the command's own lines
        text = [line]
        loop = re.match(r"(for|while|until) .*; do$", split_comment(line)[0])
        while i + 1 < len(lines) and (split_comment(own[-1])[0].endswith("\\")
                                      or (loop and own[-1].strip() != "done")):
            i += 1
            own.append(lines[i])
            text.append(lines[i])
        for heredoc in re.finditer(r"<<-?'(\w+)'", "\n".join(own)):
            end = lines.index(heredoc.group(1), i + 1)
            text.extend(lines[i + 1:end + 1])
            i = end
        parts = [split_comment(own_line) for own_line in own]
        head = "\n".join(code for code, _ in parts)
        checks = tuple(m.group(1).strip() for _, comment in parts
                       for m in [re.match(r"\s*check:(.*)", comment)] if m)
        commands.append(Command("\n".join(text), head, checks, cluster))
        i += 1
    return commands


def guide_commands() -> list[Command]:
    commands: list[Command] = []
    for block in re.findall(r"^```bash\n(.*?)^```$", guide(), re.M | re.S):
        commands.extend(commands_of(block, block.startswith(CLUSTER_MARK)))
    return commands


def check_pattern(check: str) -> re.Pattern[str]:
    """``...`` stands for any text; a space for any run of white space (``du`` prints a tab)."""
    parts = (r"\s+".join(re.escape(word) for word in part.split()) for part in check.split("..."))
    return re.compile(".*?".join(parts), re.S)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- what the guide holds -------------------------------------------------------------------------

def test_the_guide_sits_right_after_the_loop_and_before_the_quick_start():
    readme = (ROOT / "README.md").read_text()
    headings = re.findall(r"^## .*$", readme, re.M)
    at = headings.index(TITLE)
    assert headings[at - 1] == "## The loop"
    assert headings[at + 1] == "## Quick start: batch checks"


def test_every_step_of_the_guide_has_a_check():
    steps = re.split(r"^### ", guide(), flags=re.M)[1:]
    assert [step.split(".")[0] for step in steps] == [str(n) for n in range(1, 9)]
    for step in steps:
        assert "# check:" in step, step.splitlines()[0]


def test_the_commands_not_run_are_exactly_the_listed_cluster_and_setup_commands():
    commands = guide_commands()
    assert [c.head for c in commands if c.cluster] == CLUSTER_COMMANDS
    local = [c.head for c in commands if not c.cluster]
    assert [head for head in local if head in SETUP_COMMANDS] == SETUP_COMMANDS
    assert len(local) - len(SETUP_COMMANDS) >= 20  # the rest run, in the test below


def test_the_cluster_commands_are_ones_that_need_a_cluster_or_a_server_that_only_a_cluster_has():
    needs_cluster = re.compile(r"^(kubectl (apply|-n \S+ (rollout|port-forward|create secret)|get|label .*"
                               r"\| kubectl .*apply)|curl .*localhost:(8000|9095)|for topic .*kafka-topics|"
                               r"kafka-topics\.sh|driftline dashboards push)", re.S)
    for command in CLUSTER_COMMANDS:
        assert needs_cluster.match(command), command


def test_the_placeholders_for_the_users_files_appear_in_the_guide():
    text = guide()
    for placeholder in SUBSTITUTIONS:
        assert placeholder in text, placeholder
    assert f"--port {REHEARSAL_PORT}" in text and f"localhost:{REHEARSAL_PORT}/alerts" in text


def test_the_guide_writes_the_config_with_init_and_names_the_prediction_with_injects_flag_alone():
    """No script turns check's JSON into YAML, no annotation or hand-edited env names the output:
    init and inject say it, with the same model and prediction names."""
    local = [c.head for c in guide_commands() if not c.cluster]
    (init,) = [head for head in local if head.startswith("driftline init ")]
    (inject,) = [head for head in local if head.startswith("driftline inject ")]
    for command in local:
        assert "python - <<" not in command and "kubectl annotate" not in command, command

    def flag(command: str, name: str) -> str:
        found = re.search(rf"{name} (\S+)", command)
        assert found is not None, (name, command)
        return found.group(1)

    assert flag(init, "--model") == flag(inject, "--model") == "my-model"
    assert flag(init, "--prediction") == flag(inject, "--output-names") == "delay_score"
    assert flag(init, "--kafka") == flag(inject, "--kafka")


def test_the_label_the_guide_posts_is_a_valid_label_batch_of_the_wire_format():
    (command,) = [c.head for c in guide_commands() if "/labels" in c.head]
    body = re.search(r"-d '(\{.*\})'", command)
    assert body is not None
    batch = decode_labels(body.group(1).encode())
    assert batch.model == "my-model" and len(batch.labels) == 1


# --- running it -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_every_command_of_the_guide_that_needs_no_cluster_runs_and_prints_its_check(tmp_path):
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "driftline").exists(), "run the tests with the venv's python"
    (tmp_path / "k8s").symlink_to(ROOT / "k8s")
    (tmp_path / "alerts").symlink_to(ROOT / "alerts")
    port = str(free_port())

    runnable = [c for c in guide_commands() if not c.cluster and c.head not in SETUP_COMMANDS]
    script = ["set -eo pipefail", "exec 2>&1", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    for n, command in enumerate(runnable):
        text = command.text
        for placeholder, stand_in in SUBSTITUTIONS.items():
            text = text.replace(placeholder, stand_in)
        text = text.replace(f"--port {REHEARSAL_PORT}", f"--port {port}")
        text = text.replace(f"localhost:{REHEARSAL_PORT}", f"localhost:{port}")
        script += [f"printf '\\n@@command {n}@@\\n'", text]
    script.append("printf '\\n@@end@@\\n'")

    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "COLUMNS": "100"}
    env.pop("DRIFTLINE_REMEDIATE_TOKEN_FILE", None)
    process = subprocess.Popen(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the guide's background receiver, if left
        except ProcessLookupError:
            pass
        process.wait()

    pieces = re.split(r"\n@@command (\d+)@@\n", "\n" + output)
    outputs = {int(n): out for n, out in zip(pieces[1::2], pieces[2::2], strict=True)}
    last = max(outputs, default=-1)
    assert "@@end@@" in output, (f"stopped at: {runnable[last].head if last >= 0 else 'the start'}\n"
                                 f"{output[-3000:]}")
    assert len(outputs) == len(runnable)
    for n, command in enumerate(runnable):
        for check in command.checks:
            assert check_pattern(check).search(outputs[n]), (
                f"{command.head!r} should print {check!r}; it printed:\n{outputs[n][-2000:]}")
    assert sum(len(c.checks) for c in runnable) >= 12


def test_every_link_of_the_guide_points_at_a_readme_heading_or_a_file_of_the_repository():
    readme = (ROOT / "README.md").read_text()
    slugs = {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
             for heading in re.findall(r"^#+ (.*)$", readme, re.M)}
    links = re.findall(r"\]\(([^)]+)\)", guide())
    assert links
    for link in links:
        if link.startswith("#"):
            assert link[1:] in slugs, link
        else:
            assert (ROOT / link).exists(), link
