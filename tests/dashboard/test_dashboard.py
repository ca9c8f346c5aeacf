#!/usr/bin/python3
"""The dashboard in a real browser: headless Chromium (Debian's chromium and chromium-driver,
driven by python3-selenium) against `tierbus dev`, which runs its own nats-server and SQLite file.

It loads the page, publishes through the API and waits for the page's counts to change, starts a
workflow and opens its step history from the waiting list, makes an
event fail for good (a trigger in the database refuses its activity row, so it is dead-lettered
after two deliveries), removes the cause, clicks the event's replay button on the page and waits
for the page to show it processed. Then a workflow run fails for real (its email command gets no
reply: no email service runs, and each of its three attempts times out), the page lists it with a
retry button, the email service comes up (`tierbus sim`), and a click on retry takes the run back
to work until the page shows it completed. A screenshot is saved as dashboard.png in the build
directory.

Environment (set by tests/CMakeLists.txt): TB_BINARY, TB_SOURCE_DIR, TB_ARTIFACT_DIR.
"""
import glob
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BINARY = os.environ["TB_BINARY"]
SOURCE = os.environ["TB_SOURCE_DIR"]
ARTIFACTS = os.environ.get("TB_ARTIFACT_DIR", ".")
WAIT_S = 60  # generous: the suite may run under ASan on a busy 2-core machine


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None):
    """(status, JSON answer) of one request; HTTP errors are answers too."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class Dashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="tb-dashboard-")
        # The normal tier gives up after two deliveries 200 ms apart, so that the failing event
        # reaches the dead letters within the test.
        with open(os.path.join(SOURCE, "config", "tierbus.yaml")) as f:
            text = f.read()
        old = "name: normal, task_queue: default, timeout: 15m, concurrency: 15, max_deliver: 5, backoff: [2s, 10s, 60s]"
        assert old in text, "config/tierbus.yaml's normal tier changed; update the test"
        text = text.replace(old, old.replace("max_deliver: 5, backoff: [2s, 10s, 60s]",
                                             "max_deliver: 2, backoff: [200ms]"))
        cls.config = os.path.join(cls.tmp, "tierbus.yaml")
        with open(cls.config, "w") as f:
            f.write(text)
        cls.http_port = free_port()
        cls.nats_port = free_port()
        cls.base = "http://127.0.0.1:%d" % cls.http_port
        cls.log = open(os.path.join(cls.tmp, "dev.log"), "w")
        cls.sim = None  # the email service, started by the retry part of the test
        cls.dev = subprocess.Popen(
            [BINARY, "dev", "--config", cls.config, "--data-dir", os.path.join(cls.tmp, "var"),
             "--nats-port", str(cls.nats_port), "--http-port", str(cls.http_port)],
            stdout=cls.log, stderr=subprocess.STDOUT)
        deadline = time.time() + WAIT_S
        while True:
            try:
                if http("GET", cls.base + "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if cls.dev.poll() is not None or time.time() > deadline:
                cls.tearDownClass()
                raise RuntimeError("tierbus dev did not become ready; see its log above")
            time.sleep(0.2)
        dbs = glob.glob(os.path.join(cls.tmp, "var", "*.db"))
        assert len(dbs) == 1, dbs
        cls.db = dbs[0]
        opts = Options()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                  "--window-size=1400,2200"):
            opts.add_argument(a)
        cls.browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "browser", None):
            cls.browser.quit()
        if cls.sim is not None and cls.sim.poll() is None:
            cls.sim.send_signal(signal.SIGINT)
            try:
                cls.sim.wait(30)
            except subprocess.TimeoutExpired:
                cls.sim.kill()
                cls.sim.wait()
        if cls.dev.poll() is None:
            cls.dev.send_signal(signal.SIGINT)
            try:
                cls.dev.wait(30)
            except subprocess.TimeoutExpired:
                cls.dev.kill()
                cls.dev.wait()
        cls.log.close()
        with open(os.path.join(cls.tmp, "dev.log")) as f:
            log = f.read()
        if os.environ.get("TB_KEEP_TMP"):
            print("kept", cls.tmp)
        else:
            shutil.rmtree(cls.tmp, ignore_errors=True)
        print("--- tierbus dev log (last 40 lines) ---")
        print("\n".join(log.splitlines()[-40:]))

    def text(self, css):
        # The page re-renders its tables on every poll: an element found just before may be gone
        # by the time its text is read, so read it again from a fresh lookup.
        for _ in range(20):
            try:
                return self.browser.find_element(By.CSS_SELECTOR, css).text
            except StaleElementReferenceException:
                time.sleep(0.05)
        return self.browser.find_element(By.CSS_SELECTOR, css).text

    def number(self, css):
        t = self.text(css).replace(",", "")
        return int(t) if t.isdigit() else -1

    def wait_for(self, what, fn):
        try:
            return WebDriverWait(self.browser, WAIT_S, poll_frequency=0.2,
                                 ignored_exceptions=(StaleElementReferenceException,)
                                 ).until(lambda b: fn())
        except TimeoutException:
            self.browser.save_screenshot(os.path.join(ARTIFACTS, "dashboard-failed.png"))
            self.fail("the page never showed " + what)

    def block(self, on):
        """Makes the activity log refuse rows of ids starting "blocked-" (a cause to fix)."""
        db = sqlite3.connect(self.db, timeout=10)
        db.execute("CREATE TRIGGER test_block BEFORE INSERT ON activity_log "
                   "WHEN NEW.msg_id LIKE 'blocked-%' BEGIN "
                   "SELECT RAISE(ABORT, 'blocked by the test'); END" if on else
                   "DROP TRIGGER test_block")
        db.commit()
        db.close()

    def publish(self, ident, repo):
        status, body = http("POST", self.base + "/api/events",
                            {"type": "capture/repository.sync", "id": ident,
                             "payload": {"repository_id": repo}})
        self.assertEqual(status, 201, body)

    def test_dashboard(self):
        b = self.browser
        b.get(self.base + "/")
        self.assertEqual(b.title, "tierbus")
        self.wait_for("the five tiers",
                      lambda: len(b.find_elements(By.CSS_SELECTOR, "#tiers tbody tr")) == 5)
        self.wait_for("the live status", lambda: self.text("#status").startswith("live"))
        self.wait_for("the schedules",
                      lambda: "cleanup-old-jobs" in self.text("#schedules"))

        # Publish through the API; the page's counts follow.
        before = self.number("#total-processed")
        self.assertGreaterEqual(before, 0)
        for i in range(20):
            self.publish("dash-%d" % i, "repo-%d" % i)
        self.wait_for("20 more processed",
                      lambda: self.number("#total-processed") >= before + 20)
        self.wait_for("the normal tier's count",
                      lambda: self.number('#tiers tr[data-tier="normal"] .processed') >= 20)

        # A workflow started through the API waits for its command's reply (dev runs no command
        # service here): the page lists it as waiting, and a click shows its step history.
        status, body = http("POST", self.base + "/api/execute-workflow",
                            {"workflowType": "ops.customer-support-message",
                             "args": {"to": "a@example.com", "message": "hello"}})
        self.assertEqual(status, 201, body)
        run = body["runId"]
        self.wait_for("the waiting run", lambda: run in self.text("#wf-waiting"))
        b.find_element(By.XPATH, '//table[@id="wf-waiting"]//td[text()="%s"]' % run).click()
        self.wait_for("the run's step history", lambda: "reply" in self.text("#wf-detail"))

        # A job that fails for good, shown in the dead letters; its cause removed, the replay
        # button on the page makes it succeed.
        self.block(True)
        self.publish("blocked-1", "repo-b")
        self.wait_for("the dead letter with a replay button", lambda: b.find_elements(
            By.CSS_SELECTOR, '#dlq button.replay[data-id="blocked-1"]'))
        self.assertIn("blocked by the test", self.text("#dlq"))
        self.wait_for("the dead count", lambda: self.number("#total-dead") >= 1)
        processed = self.number("#total-processed")
        self.block(False)
        b.find_element(By.CSS_SELECTOR, '#dlq button.replay[data-id="blocked-1"]').click()
        self.wait_for("the replay's toast", lambda: self.text("#toast") == "replayed")
        self.wait_for("the replayed event processed",
                      lambda: self.number("#total-processed") >= processed + 1)
        db = sqlite3.connect(self.db, timeout=10)
        row = db.execute("SELECT outcome FROM processed WHERE msg_id='blocked-1'").fetchone()
        db.close()
        self.assertEqual(row, ("applied",))

        # A workflow run that fails for real: ops.send-email's email command gets no reply (no
        # email service runs yet), its three attempts time out after 2 s each, and the run fails.
        run = "dash-email-1"
        status, body = http("POST", self.base + "/api/execute-workflow",
                            {"workflowType": "ops.send-email", "id": run,
                             "args": {"to": "b@example.com", "subject": "hello",
                                      "timeout": "2s"}})
        self.assertEqual(status, 201, body)
        row_css = '#failed tr[data-id="%s"]' % run
        self.wait_for("the failed run with a retry button", lambda: b.find_elements(
            By.CSS_SELECTOR, '#failed button.retry[data-id="%s"]' % run))
        self.assertEqual(self.text(row_css + " .run-status"), "failed")
        self.assertIn("timed out waiting for the command's reply", self.text(row_css))
        # The email service comes up (the simulator answers email.send as the real one would);
        # the retry button runs the failed step again, and the page follows the run to the end.
        self.__class__.sim = subprocess.Popen(
            [BINARY, "sim", "--config", self.config, "--data-dir", os.path.join(self.tmp, "var"),
             "--nats-url", "nats://127.0.0.1:%d" % self.nats_port],
            stdout=self.log, stderr=subprocess.STDOUT)
        b.find_element(By.CSS_SELECTOR, '#failed button.retry[data-id="%s"]' % run).click()
        self.wait_for("the retry's toast", lambda: self.text("#toast") == "retry started")
        self.wait_for("the retried run completed", lambda: self.text(
            row_css + " .run-status") == "retried → completed")
        self.assertFalse(b.find_elements(By.CSS_SELECTOR, row_css + " button.retry"))
        self.assertIsNone(self.sim.poll(), "tierbus sim stopped")
        db = sqlite3.connect(self.db, timeout=10)
        wf = db.execute("SELECT status, tier FROM workflows WHERE id = ?", (run,)).fetchone()
        sends = db.execute("SELECT status, count(*) FROM workflow_history WHERE workflow_id = ? AND "
                           "name = 'send' GROUP BY status ORDER BY status", (run,)).fetchall()
        db.close()
        self.assertEqual(wf, ("completed", "high"))  # a failed retry is escalated (seed 000)
        self.assertEqual(dict(sends).get("ok"), 1, sends)
        self.assertEqual(dict(sends).get("timeout"), 3, sends)

        b.save_screenshot(os.path.join(ARTIFACTS, "dashboard.png"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
