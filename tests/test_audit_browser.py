"""The Audit view in a real browser (Debian's chromium, Playwright) against a real server on 127.0.0.1: the findings
listed by kind with their photos, a verdict recorded with one key and saved with the model, still there after the
server is restarted on the model loaded again; the standalone HTML report opened with the network cut off."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import lookalike as lk
from lookalike.dedup.decisions import read_saved
from lookalike.server.runner import start_in_thread
from test_audit import _split_layout
from test_server_browser import TIMEOUT_MS, browser  # noqa: F401 - the browser fixture

IDLE = "() => document.getElementById('view-audit').dataset.busy === 'false'"
CARDS = """() => [...document.querySelectorAll('#audit-findings .finding')].map((c) => ({
  kind: c.dataset.kind, path: c.dataset.path, decision: c.dataset.decision, current: c.classList.contains('current'),
  photos: c.querySelectorAll('img.thumb').length,
}))"""


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit-view")
    photos = _split_layout(root / "photos")
    lk.create(str(photos.root), verbose=False).save(root / "photos.lookalike")
    photos.model_path = root / "photos.lookalike"
    photos.thumbnails = root / "thumbnails"
    return photos


def _open(browser, url: str):  # noqa: F811 - the fixture, passed in
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(url)
    tab.wait_for_selector("#audit-findings .finding.current")
    tab.wait_for_function(IDLE)
    return context, tab, errors


def _press(tab, *keys: str) -> None:
    for key in keys:
        tab.keyboard.press(key)
    tab.wait_for_function(IDLE)
    assert tab.locator("#error").is_hidden(), tab.inner_text("#error")


def test_findings_are_listed_a_verdict_is_recorded_and_survives_a_restart(browser, audited):  # noqa: F811
    server = start_in_thread(
        lk.load_model(audited.model_path), model_path=audited.model_path, thumbnail_dir=audited.thumbnails
    )
    try:
        context, tab, errors = _open(browser, f"{server.url}#view=audit")
        cards = tab.evaluate(CARDS)
        listed = tab.eval_on_selector_all("#audit-kinds tr", "rows => rows.map((r) => r.cells[0].innerText)")
        assert {"leak", "blurry", "dark", "low-information", "truncated", "unreadable"} <= set(listed), listed
        assert cards and {c["kind"] for c in cards} <= set(listed)
        assert all(c["photos"] >= 1 for c in cards if c["kind"] not in ("truncated", "unreadable"))
        tab.wait_for_function(
            "() => [...document.querySelectorAll('#audit-findings .finding img.thumb')].slice(0, 6)"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        assert "expected precision" in tab.inner_text("#view-audit table")
        # Only the blurry ones: the first is marked not an issue with one key, and leaves the list.
        tab.select_option("#audit-kind", "blurry")
        tab.wait_for_function(IDLE)
        blurry = tab.evaluate(CARDS)
        assert {c["path"] for c in blurry} >= {str(p) for p in audited.blurred}
        dismissed = blurry[0]["path"]
        tab.locator("#audit-findings .finding.current").focus()
        _press(tab, "n")
        assert dismissed not in {c["path"] for c in tab.evaluate(CARDS)}
        # A dark photo excluded from the dataset with one key: it stays listed, with the verdict.
        tab.select_option("#audit-kind", "dark")
        tab.wait_for_function(IDLE)
        tab.locator("#audit-findings .finding.current").focus()
        excluded = tab.evaluate(CARDS)[0]["path"]
        _press(tab, "x")
        assert next(c for c in tab.evaluate(CARDS) if c["path"] == excluded)["decision"] == "exclude"
        context.close()
        assert errors == [], errors
    finally:
        server.stop()
    saved = read_saved(audited.model_path)
    assert saved.dismissed() == {(dismissed, "blurry")} and saved.audit_states() == {excluded: "exclude"}

    # Restarted on the model loaded again, now behind a token: the dismissed finding stays gone, the exclusion
    # stays shown, and the export link downloads the changes (a plain link cannot carry the token).
    server = start_in_thread(
        lk.load_model(audited.model_path),
        token="s3cret",
        model_path=audited.model_path,
        thumbnail_dir=audited.thumbnails,
    )
    try:
        assert server.url.endswith("#token=s3cret")  # the page learns the token from its address
        context, tab, errors = _open(browser, f"{server.url}&view=audit")
        cards = tab.evaluate(CARDS)
        assert dismissed not in {c["path"] for c in cards if c["kind"] == "blurry"}
        assert next(c for c in cards if c["path"] == excluded and c["kind"] == "dark")["decision"] == "exclude"
        with tab.expect_download() as download:
            tab.click("#audit-export")
        assert download.value.suggested_filename == "audit-changes.csv"
        csv = Path(download.value.path()).read_text()
        assert csv.splitlines() == ["path,action,label", f"{excluded},exclude,"]
        context.close()
        assert errors == [], errors
    finally:
        server.stop()


def test_the_html_report_opens_offline_with_every_thumbnail(browser, audited, tmp_path):  # noqa: F811
    report = lk.load_model(audited.model_path).audit(duplicates=False)
    page = report.to_html(tmp_path / "report.html")
    shutil.move(page, tmp_path / "moved.html")  # nothing beside it is needed
    context = browser.new_context(offline=True)
    tab = context.new_page()
    requests: list[str] = []
    tab.on("request", lambda r: requests.append(r.url))
    tab.goto((tmp_path / "moved.html").as_uri())
    assert tab.evaluate("() => [...document.images].every((i) => i.complete && i.naturalWidth > 0)")
    assert tab.evaluate("() => document.images.length") >= 5
    assert [r for r in requests if not r.startswith(("file:", "data:"))] == []
    context.close()
