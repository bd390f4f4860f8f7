"""`eval --report`: the numbers equal --output's, the page is self-contained, and a real headless
browser (Debian's chromium; .ci/run installs it) renders every chart without a network request."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, SAMPLES

SCREENSHOT = REPO / "docs" / "eval_report.png"  # README's picture; ROSPROMPT_UPDATE_SCREENSHOT=1 rewrites it
CHARTS = ("languages", "labels", "confusion", "reliability", "coverage")


@pytest.fixture(scope="module")
def report(cli, tmp_path_factory: pytest.TempPathFactory, sample_slice: Path) -> tuple[Path, dict]:
    """The report of the sample's slice (all its languages and labels); README's picture, when it
    is rewritten, shows the whole sample."""
    folder = tmp_path_factory.mktemp("report")
    whole = bool(os.environ.get("ROSPROMPT_UPDATE_SCREENSHOT"))
    sample = SAMPLES / "news_multilingual.csv" if whole else sample_slice / "news_slice.csv"
    cli("eval", sample, "--lang-col", "lang", "--label-col", "category",
        "--report", folder / "r.html", "--output", folder / "metrics.json")
    return folder / "r.html", json.loads((folder / "metrics.json").read_text(encoding="utf-8"))


def _text(page: str) -> str:
    """The page's visible text, tags removed, entities as written."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_report_numbers_equal_the_metrics_file(report):
    path, metrics = report
    page = path.read_text(encoding="utf-8")
    embedded = re.search(r'<script type="application/json" id="rosprompt-metrics">(.*?)</script>', page, re.S)
    assert embedded and json.loads(embedded.group(1).replace("<\\/", "</")) == metrics
    text = _text(page.split('<script type="application/json"')[0])
    assert f"accuracy {metrics['accuracy']:.4f}" in text and f"macro-F1 {metrics['macro_f1']:.4f}" in text
    assert f"rows {metrics['n']:,}" in text
    for m in metrics["per_label"]:
        assert f"{m['label']} {m['precision']:.3f} {m['recall']:.3f} {m['f1']:.3f} {m['support']:,}" in text, m
    assert f"Expected calibration error: {metrics['calibration']['ece']:.4f}" in text
    assert sum(b["n"] for b in metrics["calibration"]["bins"]) == metrics["n"]
    for label, row in metrics["confusion"].items():  # every count is written in its heatmap cell
        for count in row.values():
            assert f">{count}</text>" in page
    assert "command rosprompt eval" in text and "--report" in text


def test_report_is_one_self_contained_file(report):
    page = report[0].read_text(encoding="utf-8")
    links = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page) + re.findall(r"url\(([^)]*)\)", page)
    outside = [link for link in links if not link.startswith(("#", "data:"))]
    assert outside == [], outside  # only links inside the page, or data carried in it
    assert "<script src" not in page and "@import" not in page and "http://" not in page.replace(
        "http://www.w3.org/", "")
    assert [f'id="{name}"' in page for name in CHARTS] == [True] * 5


class _DevTools:
    """Chromium driven over its DevTools pipe (fd 3 in, fd 4 out, NUL-separated JSON): the test
    opens the page, records every request the page makes, asks the rendered DOM, and takes a
    screenshot, in one headless browser."""

    def __init__(self, browser: str, profile: Path) -> None:
        to_browser_r, self._to_browser = _high_pipe()
        self._from_browser, from_browser_w = _high_pipe()

        def wire() -> None:
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.proc = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=wire, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=os.environ | {"HOME": str(profile)},
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, session: str | None = None, **params: object) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                assert "error" not in reply, reply
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str) -> None:
        while not any(event.get("method") == method for event in self.events):
            self.events.append(self._read())

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_browser, 1 << 20)
            assert chunk, "the browser went away"
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def _high_pipe() -> tuple[int, int]:
    """A pipe whose two ends are above fd 4, so that wiring them to 3 and 4 overwrites neither."""
    import fcntl

    ends = []
    for fd in os.pipe():
        ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD, 10))
        os.close(fd)
    return ends[0], ends[1]


RENDERED = """JSON.stringify([...document.querySelectorAll('section')].map(s => {
  const svg = s.querySelector('svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  return {id: s.id, width: box.width, height: box.height,
          marks: svg ? svg.querySelectorAll('path, rect, use, image, text').length : 0};
}))"""


def test_report_renders_in_a_headless_browser_without_network(report, tmp_path):
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if browser is None:
        pytest.skip("no chromium here (Debian: apt-get install chromium; .ci/run installs it)")
    url = report[0].as_uri()
    chrome = _DevTools(browser, tmp_path / "profile")
    try:
        target = chrome.call("Target.createTarget", url="about:blank")["targetId"]
        session = chrome.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        chrome.call("Network.enable", session)
        chrome.call("Page.enable", session)
        chrome.call("Emulation.setDeviceMetricsOverride", session, width=1100, height=3000, deviceScaleFactor=1,
                    mobile=False)
        chrome.call("Page.navigate", session, url=url)
        chrome.wait_for("Page.loadEventFired")
        rendered = json.loads(chrome.call("Runtime.evaluate", session, expression=RENDERED)["result"]["value"])
        shot = chrome.call("Page.captureScreenshot", session, format="png")["data"]
    finally:
        chrome.close()
    requests = [e["params"]["request"]["url"] for e in chrome.events if e.get("method") == "Network.requestWillBeSent"]
    assert requests and requests[0] == url
    assert [r for r in requests if r != url and not r.startswith("data:")] == [], "the page asked the network"
    charts = {section["id"]: section for section in rendered}
    for name in CHARTS:  # each chart drawn: a box of real size, with its bars, cells, axes and labels
        assert charts[name]["width"] > 200 and charts[name]["height"] > 100, charts[name]
        assert charts[name]["marks"] > 20, charts[name]

    import base64
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(shot))).convert("RGB")
    assert image.size == (1100, 3000)
    assert len(image.getcolors(1 << 20) or []) > 50, "the screenshot shows charts, not a blank page"
    if os.environ.get("ROSPROMPT_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        image.quantize(colors=64).save(SCREENSHOT, optimize=True)
