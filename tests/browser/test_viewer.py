"""The web viewer in a real browser: Debian's chromium, headless, driven by Selenium
through chromium-driver, against `stele dev` serving the viewer next to the API.

It sends events as a tenant, waits until they are stored and a signed checkpoint
covers them, then uses the page as a person would: enters the token, searches,
reads the table (ids, actions, newest first), pages with Next/Previous, narrows
with a filter, opens an event and clicks "Verify proof", and reads the verdict.
A screenshot of the verified event is saved (docs/viewer.png is one).

    bash tests/browser/run.sh           # what scripts/test runs

Environment: STELE_BIN (the stele binary), STELE_TEST_PG_URL and
STELE_TEST_AWS_ENDPOINT (the test run's services; without them `stele dev`
starts its own), STELE_VIEWER_SCREENSHOT (default $TMPDIR/stele-viewer.png; empty:
none; STELE_VIEWER_SCREENSHOT=docs/viewer.png refreshes the documentation's).
"""

import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOKEN, TENANT = "viewer-token-acme", "acme"
OTHER_TOKEN = "viewer-token-globex"
ACTIONS = ["viewer.login", "viewer.export", "viewer.delete"]
EVENTS = 30  # more than one page of 25


def log(msg):
    print(f"test_viewer: {msg}", file=sys.stderr, flush=True)


def psql(url, sql):
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True, stdout=subprocess.DEVNULL)


def with_database(url, name):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


class Dev:
    """`stele dev --port 0` as a child process; its viewer/API base URL once ready."""

    def __init__(self, tmp, suffix):
        self.admin_url = os.environ.get("STELE_TEST_PG_URL")
        self.db = f"viewer_{suffix}"
        args = [
            os.environ.get("STELE_BIN", os.path.join(ROOT, "target", "debug", "stele")),
            "dev", "--port", "0", "--batch-window-ms", "200", "--checkpoint-every", "1",
            "--log-key-file", os.path.join(tmp, "log.skey"),
            "--token", f"{TOKEN}={TENANT}", "--token", f"{OTHER_TOKEN}=globex",
            "--stream", f"viewer-{suffix}", "--dlq", f"viewer-dlq-{suffix}", "--bucket", f"viewer-{suffix}",
        ]
        if self.admin_url:
            # A database of its own on the run's PostgreSQL: no other test's tenants.
            psql(self.admin_url, f"CREATE DATABASE {self.db}")
            args += ["--pg-url", with_database(self.admin_url, self.db)]
        if os.environ.get("STELE_TEST_AWS_ENDPOINT"):
            args += ["--aws-endpoint", os.environ["STELE_TEST_AWS_ENDPOINT"]]
        self.vkey_file = os.path.join(tmp, "log.vkey")
        # Its log goes to a file, shown if the test fails.
        self.err_path = os.path.join(tmp, "stele-dev.err")
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=self.err, text=True)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in self.proc.stdout], daemon=True).start()
        self.base = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError(f"stele dev exited with {self.proc.returncode} before it was ready")
                continue
            m = re.match(r"viewer\s+(http://\S+?)/?\s", line)
            if m:
                self.base = m.group(1)
            if line.startswith("ready:"):
                break
        assert self.base, "stele dev printed no viewer address"
        log(f"stele dev ready, viewer at {self.base}/")

    def stop(self):
        self.proc.send_signal(2)  # Ctrl-C: a clean stop
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.err.close()
        if self.admin_url:
            psql(self.admin_url, f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")

    def log_tail(self, lines=60):
        with open(self.err_path) as f:
            return "".join(f.readlines()[-lines:])

    def call(self, method, path, token, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


def event(i, now):
    return {
        # One second apart, so "newest first" is one order.
        "occurred_at": (now - timedelta(seconds=EVENTS - i)).isoformat(),
        "category": "audit",
        "action": ACTIONS[i % 3],
        "outcome": "denied" if ACTIONS[i % 3] == "viewer.delete" else "success",
        "actor": {"id": f"user-{i % 4}", "type": "user"},
        "resource": {"type": "document", "id": f"doc-{i}"},
        "metadata": {"note": f"<b>event {i}</b>"},  # shown as text, never as markup
        "source": {"service": "viewer-test"},
    }


def send_events(dev):
    now = datetime.now(timezone.utc)
    events = [event(i, now) for i in range(EVENTS)]
    status, body = dev.call("POST", "/v1/events", TOKEN, {"events": events})
    assert status == 202, f"ingest answered {status}: {body}"
    accepted = json.loads(body)["accepted"]
    assert len(accepted) == EVENTS, body
    # Another tenant's events: never on acme's page.
    status, body = dev.call("POST", "/v1/events", OTHER_TOKEN, {"events": [event(i, now) for i in range(3)]})
    assert status == 202, body
    # newest first: the last sent is the newest
    ids = [a["event_id"] for a in accepted]
    return {ids[i]: events[i]["action"] for i in range(EVENTS)}, list(reversed(ids))


def wait_until_checkpointed(dev, ids):
    frm = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    to = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    query = urllib.parse.urlencode({"from": frm, "to": to, "limit": 1000})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status, body = dev.call("GET", f"/v1/events?{query}", TOKEN)
        assert status == 200, body
        if len(json.loads(body)["events"]) == len(ids):
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the events were not stored within 120 s")
    for event_id in ids:
        while True:
            status, body = dev.call("GET", f"/v1/events/{event_id}/proof", TOKEN)
            if status == 200:
                break
            assert status == 409 and time.monotonic() < deadline, f"proof of {event_id}: {status} {body}"
            time.sleep(0.5)
    log(f"{len(ids)} events stored and checkpointed")


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("STELE_CHROMIUM", "/usr/bin/chromium")
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1500", "--force-device-scale-factor=1"]:
        options.add_argument(arg)
    service = Service(executable_path=os.environ.get("STELE_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(options=options, service=service)


def rows(driver):
    out = []
    for tr in driver.find_elements(By.CSS_SELECTOR, "#events tbody tr"):
        cells = tr.find_elements(By.TAG_NAME, "td")
        out.append({"id": tr.get_attribute("data-event-id"), "occurred": cells[0].text, "action": cells[1].text})
    return out


def loaded(driver):
    return driver.find_element(By.ID, "events").get_attribute("data-loaded") or "0"


def search_and_wait(driver, wait, expected_count):
    before = loaded(driver)
    driver.find_element(By.ID, "search-button").click()
    return wait_for_rows(driver, wait, expected_count, before)


def wait_for_rows(driver, wait, expected_count, before):
    """The rows once the search started after `before` (the page's answer count) has answered."""
    try:
        wait.until(lambda d: loaded(d) != before)
    except Exception:
        raise AssertionError(f"no answer; status: {driver.find_element(By.ID, 'status').text!r}")
    found = rows(driver)
    status = driver.find_element(By.ID, "status").text
    assert len(found) == expected_count, f"expected {expected_count} rows, got {len(found)}; status: {status!r}"
    return found


def verify_verdict(driver, wait):
    driver.find_element(By.ID, "verify").click()
    verdict = driver.find_element(By.ID, "verdict")
    wait.until(lambda d: verdict.is_displayed() and verdict.get_attribute("class") != "pending")
    return verdict.get_attribute("class"), verdict.text


def run():
    suffix = uuid.uuid4().hex[:10]
    with tempfile.TemporaryDirectory(prefix="stele-viewer.") as tmp:
        dev = Dev(tmp, suffix)
        driver = None
        try:
            actions, newest_first = send_events(dev)
            wait_until_checkpointed(dev, newest_first)
            driver = browser()
            log(f"browser: {driver.capabilities.get('browserVersion')}")
            wait = WebDriverWait(driver, 30)
            driver.get(dev.base + "/")

            # The dev page knows the log's key and origin (config.json); the token is typed.
            wait.until(lambda d: d.find_element(By.ID, "vkey").get_attribute("value"))
            with open(dev.vkey_file) as f:
                assert driver.find_element(By.ID, "vkey").get_attribute("value") == f.read().strip()
            assert driver.find_element(By.ID, "log-origin").get_attribute("value") == "stele.dev/local"
            driver.find_element(By.ID, "token").send_keys(TOKEN)
            Select(driver.find_element(By.ID, "limit")).select_by_visible_text("25")

            # Page 1: the 25 newest of the tenant's 30 events, newest first.
            page1 = search_and_wait(driver, wait, 25)
            assert [r["id"] for r in page1] == newest_first[:25], "page 1 is not the 25 newest, newest first"
            assert all(r["action"] == actions[r["id"]] for r in page1), page1
            assert [r["occurred"] for r in page1] == sorted((r["occurred"] for r in page1), reverse=True)
            assert driver.find_element(By.ID, "prev").get_attribute("disabled")
            # Page 2 has the other 5; Previous brings page 1 back.
            before = loaded(driver)
            driver.find_element(By.ID, "next").click()
            page2 = wait_for_rows(driver, wait, 5, before)
            assert [r["id"] for r in page2] == newest_first[25:], "page 2 is not the 5 oldest"
            assert driver.find_element(By.ID, "next").get_attribute("disabled")
            before = loaded(driver)
            driver.find_element(By.ID, "prev").click()
            assert [r["id"] for r in wait_for_rows(driver, wait, 25, before)] == newest_first[:25]
            log("pages: 25 + 5 events, newest first, Next and Previous")

            # A filter narrows the table: exact action, then a prefix.
            driver.find_element(By.ID, "action").send_keys("viewer.export")
            exports = search_and_wait(driver, wait, 10)
            assert {r["action"] for r in exports} == {"viewer.export"}, exports
            assert [r["id"] for r in exports] == [i for i in newest_first if actions[i] == "viewer.export"]
            driver.find_element(By.ID, "action").clear()
            driver.find_element(By.ID, "action").send_keys("viewer.*")
            Select(driver.find_element(By.ID, "outcome")).select_by_visible_text("denied")
            denied = search_and_wait(driver, wait, 10)
            assert {r["action"] for r in denied} == {"viewer.delete"}, denied
            driver.find_element(By.ID, "action").clear()
            driver.find_element(By.ID, "action").send_keys("viewer.export")
            Select(driver.find_element(By.ID, "outcome")).select_by_visible_text("any")
            exports = search_and_wait(driver, wait, 10)
            log("filters: action viewer.export → 10 rows; viewer.* and denied → 10 rows")

            # Open the newest export: its fields, its hash, and a verified proof.
            target = exports[0]["id"]
            driver.find_element(By.CSS_SELECTOR, f'#events tbody tr[data-event-id="{target}"]').click()
            detail = driver.find_element(By.ID, "detail")
            wait.until(lambda d: detail.is_displayed())
            shown = json.loads(driver.find_element(By.ID, "detail-json").text)
            assert shown["event_id"] == target and shown["action"] == "viewer.export", shown
            assert shown["metadata"]["note"].startswith("<b>event"), "markup in a field is shown as text"
            assert driver.find_element(By.ID, "detail-hash").text == shown["event_hash"]
            kind, text = verify_verdict(driver, wait)
            steps = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#verify-steps li")]
            assert kind == "verified" and text.startswith("Verified:"), f"{kind}: {text}\n{steps}"
            assert any("signature verified (Ed25519" in s for s in steps), steps
            assert f"leaf {shown['leaf_index']} of acme's log" in text, text
            log(f"verify: {text}")
            shot = os.environ.get("STELE_VIEWER_SCREENSHOT", os.path.join(tempfile.gettempdir(), "stele-viewer.png"))
            if shot:
                driver.execute_script("window.scrollTo(0, 0)")
                driver.save_screenshot(shot)
                log(f"screenshot: {shot}")

            # The same proof against another log's origin fails, and says so.
            origin = driver.find_element(By.ID, "log-origin")
            origin.clear()
            origin.send_keys("stele.dev/elsewhere")
            kind, text = verify_verdict(driver, wait)
            assert kind == "failed" and "FAILED" in text and "stele.dev/elsewhere/tenant/acme" in text, text
            # Without a key it verifies the inclusion only, and says the signature was not checked.
            origin.clear()
            origin.send_keys("stele.dev/local")
            driver.find_element(By.ID, "vkey").clear()
            kind, text = verify_verdict(driver, wait)
            assert kind == "partial" and "signature was not checked" in text, text
            log("verify: a wrong origin fails; no key is inclusion only, said so")
            log("PASS")
        except BaseException:
            log("stele dev's last log lines:\n" + dev.log_tail())
            raise
        finally:
            if driver is not None:
                driver.quit()
            dev.stop()


if __name__ == "__main__":
    run()
