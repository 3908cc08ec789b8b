"""The student's JupyterLab for the tests: the bundle in a throwaway venv, a Jupyter server, Chromium.

``student_venv`` installs the bundle (``python -m grader bundle``) the way its README says, ``pip install -e
.`` from the bundle, into a throwaway virtual environment, offline: the venv borrows the packages of the
project's venv through a ``.pth`` line (torch, ipykernel, ...) but not the project's own editable install of
``grader`` and ``tricksref``, whose import hook would otherwise answer for any module the bundle lacks. The
kernel runs that venv's Python (a kernelspec of the server's own), so a notebook imports the bundle's
``grader`` and ``tricksref`` and nothing else.

``jupyter_lab`` starts the installed JupyterLab 4 (with nbgrader's extensions, as ``pip install nbgrader``
leaves them) on a free loopback port with a token, rooted in the bundle, with its own config, data, runtime,
settings, workspace and IPython folders, so nothing of the machine's ``~/.jupyter`` applies and nothing of a
previous run is restored.

The ``Lab`` class drives the page like a student: open a notebook, click a cell, type, Shift+Enter, read the
output, press a toolbar button. Every wait is on a state of the page (a cell's output, the kernel's status, a
dialog), bounded by a generous timeout that names what it waited for.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the display name of the kernelspec that runs the student venv's Python
KERNEL_NAME = "Python 3 (student bundle)"

#: a loaded 2-core machine: the kernel's first import of torch, or nbgrader's validation of a whole
#: notebook, may take tens of seconds
SLOW = 240.0


def build_bundle(out: Path) -> subprocess.CompletedProcess:
    """The student bundle, made with the public command (the site left out: the tests do not read it)."""
    return subprocess.run([sys.executable, "-m", "grader", "bundle", str(out), "--no-site", "--force"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def student_venv(bundle: Path, venv: Path) -> Path:
    """A throwaway venv with the bundle installed as its README says (offline); returns its Python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    # a plain path line: the project's packages become importable, but the .pth files there (the project's
    # editable install of grader and tricksref) are not run
    Path(purelib, "_project_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                           "--no-build-isolation", "--no-index", "--quiet", "-e", str(bundle)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"pip install -e {bundle} failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return python


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LabServer:
    url: str       # http://127.0.0.1:PORT/
    token: str
    root: Path
    log: Path
    process: subprocess.Popen

    def api(self, method: str, path: str) -> object:
        req = urllib.request.Request(f"{self.url}api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """End every kernel session (a test's definitions must not leak into the next one's kernel)."""
        for s in self.api("GET", "sessions"):
            self.api("DELETE", f"sessions/{s['id']}")

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def _write_settings(settings: Path) -> None:
    # the first start asks whether to fetch Jupyter's news (a toast over the notebook); say no, as a
    # student who answered it would have, and never look for updates (offline)
    notes = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notes.parent.mkdir(parents=True, exist_ok=True)
    notes.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # every cell in the page: Lab's default virtual scrolling leaves a cell far below the view without its
    # editor, so a test could not find it by its text (a student scrolls; "none" is one of Lab's own choices);
    # long lines wrapped, so that a screenshot shows the whole of a typed one-line function
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    tracker.write_text(json.dumps({"windowingMode": "none", "codeCellConfig": {"lineWrap": True}}))


@contextlib.contextmanager
def jupyter_lab(root: Path, kernel_python: Path, home: Path, timeout: float = SLOW) -> Iterator[LabServer]:
    """JupyterLab serving ``root`` on 127.0.0.1, its ``python3`` kernel run by ``kernel_python``."""
    dirs = {name: home / name for name in ("config", "data", "path", "runtime", "settings", "workspaces",
                                           "ipython")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    # JUPYTER_PATH comes first in Jupyter's search path (before the venv's share/jupyter, which jupyter_core
    # prefers to the user's folder inside a venv): this spec replaces the server's own python3
    spec = dirs["path"] / "kernels" / "python3" / "kernel.json"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps({"argv": [str(kernel_python), "-m", "ipykernel_launcher", "-f",
                                         "{connection_file}"],
                                "display_name": KERNEL_NAME, "language": "python",
                                "metadata": {"debugger": False}}))
    _write_settings(dirs["settings"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHON"))}
    env.update(JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_DATA_DIR=str(dirs["data"]),
               JUPYTER_PATH=str(dirs["path"]),
               JUPYTER_RUNTIME_DIR=str(dirs["runtime"]), JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
               JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]), IPYTHONDIR=str(dirs["ipython"]),
               PYTHONUNBUFFERED="1")
    token = secrets.token_hex(16)
    log = home / "jupyter-lab.log"
    for _attempt in range(3):  # the free port may be taken between our probe and the server's bind
        port = free_port()
        with open(log, "w") as f:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                 f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
                 f"--IdentityProvider.token={token}", "--LabApp.news_url=", "--ServerApp.open_browser=False",
                 "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                 *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI runs as root
                cwd=root, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        server = LabServer(f"http://127.0.0.1:{port}/", token, root, log, proc)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                server.api("GET", "status")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        if proc.poll() is None:
            break
        if "address already in use" not in log.read_text(errors="replace").lower():
            raise RuntimeError(f"jupyter lab exited ({proc.returncode}):\n{server.log_tail()}")
    else:
        raise RuntimeError(f"jupyter lab found no free port:\n{server.log_tail()}")
    try:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"jupyter lab did not answer within {timeout:.0f} s:\n{server.log_tail()}")
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.shutdown_kernels()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---------------------------------------------------------------------------------------------------------
# driving the page


#: the notebook on show (JupyterLab keeps other tabs' panels in the page, hidden)
_PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
#: JavaScript that binds ``cell`` to the cell numbered ``arguments[0]`` of the notebook on show
_CELL = f"const cell = document.querySelectorAll('{_PANEL} .jp-Cell')[arguments[0]];\n"


class Lab:
    """One browser tab on a JupyterLab notebook, used as a student uses it."""

    def __init__(self, driver, server: LabServer):
        self.driver, self.server = driver, server

    def wait(self, what: str, script: str, *args, timeout: float = SLOW, interval: float = 0.25):
        """Poll ``script`` (JavaScript returning a value) until it is truthy; fail naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.driver.execute_script(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"JupyterLab: waited {timeout:.0f} s for {what}; the server's log "
                                   f"ends:\n{self.server.log_tail(30)}")
            time.sleep(interval)

    def open(self, path: str) -> None:
        """Open ``path`` (relative to the server's root) in a workspace of its own, nothing restored."""
        workspace = "w" + secrets.token_hex(4)
        self.driver.get(f"{self.server.url}lab/workspaces/{workspace}/tree/{path}?reset&token="
                        f"{self.server.token}")
        self.wait("the notebook's cells", f"return document.querySelectorAll('{_PANEL} .jp-Cell').length > 3")
        self.wait_idle()

    def wait_idle(self, timeout: float = SLOW) -> None:
        """The bundle's kernel is connected and idle (the toolbar's kernel name and execution indicator)."""
        self.wait(f"the kernel {KERNEL_NAME!r}, idle", f"""
            const panel = document.querySelector('{_PANEL}');
            const name = panel.querySelector('.jp-Toolbar-kernelName');
            const state = panel.querySelector('.jp-Notebook-ExecutionIndicator');
            return name && name.innerText.trim() === arguments[0] && state
                && state.getAttribute('data-status') === 'idle';""", KERNEL_NAME, timeout=timeout)

    def cells(self) -> list:
        return self.driver.find_elements("css selector", f"{_PANEL} .jp-Cell")

    def cell_index(self, contains: str) -> int:
        """The index of the first code cell whose source contains ``contains``."""
        return self.wait(f"a code cell holding {contains!r}", f"""
            const cells = document.querySelectorAll('{_PANEL} .jp-Cell');
            for (let i = 0; i < cells.length; i++) {{
                const editor = cells[i].querySelector('.cm-content');
                if (cells[i].classList.contains('jp-CodeCell') && editor
                    && editor.innerText.includes(arguments[0])) return i + 1;
            }}
            return 0;""", contains) - 1

    def output(self, index: int) -> str:
        return self.driver.execute_script(_CELL + """
            const out = cell.querySelector('.jp-OutputArea');
            return out ? out.innerText : '';""", index)

    def prompt(self, index: int) -> str:
        """The cell's prompt: ``[ ]:`` before it ran, ``[*]:`` while it runs, ``[3]:`` after."""
        return self.driver.execute_script(_CELL + "return cell.querySelector('.jp-InputPrompt').innerText;",
                                          index)

    def focus(self, index: int) -> None:
        """Click into the cell's editor, as a student does before typing or pressing Shift+Enter."""
        cell = self.cells()[index]
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)
        cell.find_element("css selector", ".cm-content").click()
        self.wait(f"cell {index} in edit mode", _CELL + """
            return cell.classList.contains('jp-mod-active')
                && cell.querySelector('.cm-editor.cm-focused') !== null;""", index, timeout=30)

    def run(self, index: int, *, until: str | None = None, timeout: float = SLOW) -> str:
        """Click into cell ``index``, press Shift+Enter, wait until it has run (and its output holds
        ``until``); returns its output's text."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        before = self.prompt(index)
        self.focus(index)
        ActionChains(self.driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        self.wait(f"cell {index} to run", _CELL + """
            const p = cell.querySelector('.jp-InputPrompt').innerText;
            return /\\[\\d+\\]/.test(p) && p !== arguments[1];""", index, before)
        if until is not None:
            self.wait(f"{until!r} in the output of cell {index}", _CELL + """
                const out = cell.querySelector('.jp-OutputArea');
                return out && out.innerText.includes(arguments[1]);""", index, until, timeout=timeout)
        self.wait_idle()
        return self.output(index)

    def type_into(self, index: int, code: str) -> str:
        """Replace the text of cell ``index`` by typing ``code`` in its editor; returns the editor's text."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        self.focus(index)
        editor = self.cells()[index].find_element("css selector", ".cm-content")
        ActionChains(self.driver).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL).perform()
        ActionChains(self.driver).send_keys(Keys.DELETE).perform()
        editor.send_keys(code)
        return self.driver.execute_script(_CELL + """
            return Array.from(cell.querySelectorAll('.cm-line')).map(l => l.innerText).join('\\n');""",
                                          index)

    def validate(self, timeout: float = SLOW) -> dict:
        """Press nbgrader's Validate button (it saves the notebook, then validates the file on the server) and
        wait for its dialog; returns ``{"kind": the result's class, e.g. "validation-success", "text": ...}``
        (``kind`` "error" for nbgrader's error dialog, which has no result)."""
        # the toolbar draws the button as a jp-button of class validate-button (or inside a widget of it)
        button = f"{_PANEL} jp-button.validate-button, {_PANEL} .validate-button jp-button"
        self.driver.find_element("css selector", button).click()
        return self.wait("nbgrader's validation dialog", """
            const dialog = document.querySelector('.jp-Dialog');
            if (!dialog) return null;
            const m = dialog.querySelector('#validation-message');
            if (!m) return {kind: 'error', text: dialog.innerText};
            const kinds = ['validation-success', 'validation-failed', 'validation-changed',
                           'validation-type-changed', 'validation-passed'];
            return {kind: kinds.find(c => m.classList.contains(c)) || m.className, text: m.innerText};""",
                         timeout=timeout)

    def close_dialog(self) -> None:
        self.driver.find_element("css selector", ".jp-Dialog .jp-mod-accept").click()
        self.wait("the dialog to close", "return document.querySelector('.jp-Dialog') === null;", timeout=30)

    def screenshot(self, path: Path, index: int | None = None) -> None:
        """Save the window as a PNG, cell ``index`` (and its output) scrolled to the top of the view."""
        if index is not None:
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", self.cells()[index])
            time.sleep(0.3)  # let the scroll settle before the picture
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
