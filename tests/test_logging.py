"""The package reports through the "frcnn" logger: a program that embeds it decides what is shown, and the scripts
show the same lines as ever on stderr."""

import logging
import subprocess
import sys

from helpers import ROOT

from frcnn.core.log import log


def test_library_messages_go_to_the_frcnn_logger():
    from frcnn.reporting.gallery import log as gallery_log

    assert gallery_log is log and log.name == "frcnn"
    heard: list[logging.LogRecord] = []
    listener = logging.Handler()
    listener.emit = heard.append
    level = log.level
    log.addHandler(listener)
    log.setLevel(logging.INFO)
    try:
        log.info("Exporting v2 ...")
    finally:
        log.removeHandler(listener)
        log.setLevel(level)
    assert [record.getMessage() for record in heard] == ["Exporting v2 ..."]


def test_an_embedding_program_can_silence_the_package():
    code = ("import logging; from frcnn.core.log import log\n"
            "logging.getLogger('frcnn').setLevel(logging.ERROR)\n"
            "log.warning('warning: not shown'); print('done')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "done" and result.stderr == "", result.stderr


def test_scripts_show_the_bare_lines_on_stderr_once():
    code = ("from frcnn.core.log import log, show_messages_on_stderr\n"
            "show_messages_on_stderr(); show_messages_on_stderr()\n"
            "log.info('Exported v1 in 1.0 s'); log.warning('warning: careful')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["Exported v1 in 1.0 s", "warning: careful"]
