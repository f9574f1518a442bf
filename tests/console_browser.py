"""Drives /console in headless Chromium (Debian's chromium and chromium-driver) through Selenium.

Run by tests/console.rs, which starts the host and passes: base URL, a client key, the admin
key, the plugins folder and the folder for screenshots. Prints one line per check that
passed and the path of every screenshot; a failure leaves a screenshot of where it stopped.
"""

import json
import os
import sys
import time
import traceback
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE, CLIENT_KEY, ADMIN_KEY, PLUGINS_DIR, SHOTS = sys.argv[1:6]
WAIT_SECS = 30

options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("EASEL_TEST_CHROMIUM", "/usr/bin/chromium")
for argument in [
    "--headless=new",
    "--no-sandbox",  # the suite may run as root (CI containers)
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--window-size=1280,900",
]:
    options.add_argument(argument)
# Naming the driver keeps Selenium Manager from looking for one on the network.
service = Service(executable_path=os.environ.get("EASEL_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
driver = webdriver.Chrome(options=options, service=service)
shots = 0


def shot(name):
    global shots
    shots += 1
    path = os.path.join(SHOTS, f"{shots:02d}-{name}.png")
    driver.save_screenshot(path)
    print(f"screenshot {path}", flush=True)


def wait_for(css, what=None):
    try:
        return WebDriverWait(driver, WAIT_SECS).until(
            ready.visibility_of_element_located((By.CSS_SELECTOR, css))
        )
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what or css}")


def wait_until(condition, what):
    # The console re-renders a view when its data arrives, so an element found a moment ago
    # may be replaced before its text is read: that is "not yet", not a failure.
    waiting = WebDriverWait(
        driver, WAIT_SECS, ignored_exceptions=[StaleElementReferenceException]
    )
    try:
        return waiting.until(lambda d: condition())
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}")


def click(css, what):
    """Clicks the element `css` names, found again if the view re-rendered it meanwhile."""

    def attempt():
        driver.find_element(By.CSS_SELECTOR, css).click()
        return True

    wait_until(attempt, what)


def page(name):
    wait_for(f'main[data-page="{name}"]', f"the {name} page")


def sign_in(key):
    driver.get(f"{BASE}/console#/signin")
    page("signin")
    field = wait_for("#key")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()


def fill(css, text):
    field = wait_for(css)
    field.clear()
    field.send_keys(text)


def run_job(prompt, model="offline/image", attach=None, **params):
    page("playground")
    Select(wait_for("#model")).select_by_value(model)
    fill("#prompt", prompt)
    if attach:
        driver.find_element(By.CSS_SELECTOR, "#files").send_keys(attach)
    for name, value in params.items():
        fill(f"#param-{name}", str(value))
    driver.find_element(By.CSS_SELECTOR, "#run").click()


def admin_get(path):
    """What an admin route answers, read past the browser (to see what the console stored)."""
    request = urllib.request.Request(f"{BASE}{path}", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    with urllib.request.urlopen(request, timeout=WAIT_SECS) as answer:
        return json.load(answer)


def admin_post(path, body):
    """POSTs `body` to an admin route past the browser; what it answers."""
    request = urllib.request.Request(
        f"{BASE}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=WAIT_SECS) as answer:
        return json.load(answer)


def media_loaded(tag):
    """Waits until the job's <video> or <audio> has read its file's header; its state then."""
    state = wait_until(
        lambda: driver.execute_script(
            "const m = document.querySelector('#job ' + arguments[0]);"
            "if (!m) return null;"
            "if (m.error) return {error: `${m.error.code} ${m.error.message}`};"
            "return m.readyState >= 1 && m.duration > 0"
            "  ? {duration: m.duration, width: m.videoWidth || 0, height: m.videoHeight || 0} : null;",
            tag,
        ),
        f"the {tag} to load",
    )
    assert "error" not in state, f"the {tag} does not play: {state['error']}"
    return state


def nav_reachable():
    """Every navigation link is shown inside the screen's width."""
    links = driver.execute_script(
        "return [...document.querySelectorAll('#nav a')].map((a) => {"
        "  const r = a.getBoundingClientRect();"
        "  return {text: a.textContent, left: r.left, right: r.right, shown: r.width > 0 && r.height > 0};"
        "});"
    )
    width = driver.execute_script("return window.innerWidth")
    assert len(links) >= 6, links
    outside = [l for l in links if not l["shown"] or l["left"] < 0 or l["right"] > width]
    assert not outside, f"navigation off a {width}px screen: {outside}"


def check():
    # A bad key is refused with the API's own sentence.
    sign_in("not-a-key-of-this-host")
    refusal = wait_for("#signin-outcome .error", "the sign-in refusal")
    assert refusal.text == "Invalid API key.", refusal.text
    shot("signin-refused")
    print("bad key shows the API's message", flush=True)

    # A client key opens the playground; the form comes from the model's schema.
    sign_in(CLIENT_KEY)
    page("playground")
    Select(wait_for("#model")).select_by_value("offline/image")
    width = wait_for("#param-width")
    assert (width.get_attribute("type"), width.get_attribute("min"), width.get_attribute("max")) == (
        "number",
        "8",
        "4096",
    ), width.get_attribute("outerHTML")
    assert width.get_attribute("value") == "512", "the default is filled in"
    Select(wait_for("#model")).select_by_value("demo/image")
    style = Select(wait_for("#param-style"))
    assert style.first_selected_option.text == "gradient", "an enum is a select with its default"
    print("the form follows the schema", flush=True)

    # A refused request shows the API's message, not a blank page.
    Select(wait_for("#model")).select_by_value("offline/image")
    driver.find_element(By.CSS_SELECTOR, "#run").click()
    refusal = wait_for("#outcome .error", "the refusal of a job without a prompt")
    assert refusal.text == "prompt is required.", refusal.text
    print("a refused job shows the API's message", flush=True)

    # An image job runs and its image is rendered.
    run_job("a lighthouse at dawn", width=320, height=200)
    wait_for('#job[data-status="succeeded"]', "the image job to succeed")
    wait_until(
        lambda: driver.execute_script(
            "const img = document.querySelector('#job img.output');"
            "return img && img.complete && img.naturalWidth;"
        ),
        "the image to load",
    )
    shown = driver.find_element(By.CSS_SELECTOR, "#job").text
    assert "null" not in shown and "[object" not in shown, f"the job view shows only its parts: {shown!r}"
    natural = driver.execute_script("return document.querySelector('#job img.output').naturalWidth")
    assert natural == 320, natural
    link = driver.find_element(By.CSS_SELECTOR, "#job a.download")
    href = link.get_attribute("href")
    assert href == driver.execute_script("return document.querySelector('#job img.output').src"), href
    assert link.get_attribute("download").endswith(".png"), link.get_attribute("outerHTML")
    with urllib.request.urlopen(href, timeout=WAIT_SECS) as download:
        assert download.headers["Content-Type"] == "image/png", download.headers
    driver.execute_script("window.scrollTo(0, 0)")
    shot("playground-image")
    print("image rendered", flush=True)

    # A video and a speech job play inline: the browser reads and decodes their files.
    run_job("waves on a shore", model="offline/video")
    wait_for('#job[data-status="succeeded"]', "the video job to succeed")
    video = media_loaded("video")
    assert (video["duration"], video["width"], video["height"]) == (2, 96, 54), video
    played = wait_until(
        lambda: driver.execute_script(
            "const v = document.querySelector('#job video');"
            "v.muted = true; if (v.paused && !v.ended) v.play();"
            "return v.currentTime > 0.5 && v.currentTime;"
        ),
        "the video to play",
    )
    shot("playground-video")
    run_job("two tones", model="offline/speech")
    wait_for('#job[data-status="succeeded"]', "the speech job to succeed")
    media_loaded("audio")
    # The demo plugin's video (what a first run of easel makes) plays too.
    run_job("waves on a shore", model="demo/video")
    wait_for('#job[data-status="succeeded"]', "the demo video job to succeed")
    demo = media_loaded("video")
    assert (demo["duration"], demo["width"], demo["height"]) == (2, 160, 90), demo
    print(f"video and audio play inline (video played to {played:.1f}s)", flush=True)

    # A slow job, with an input file attached (a screenshot taken above), is cancelled from
    # its task page.
    run_job("hold a worker", attach=os.path.join(SHOTS, "01-signin-refused.png"), work_ms=60000)
    wait_for("#job .status-line a", "the slow job's link")
    task_id = wait_until(
        lambda: driver.find_element(By.CSS_SELECTOR, "#job .status-line a").text,
        "the slow job's id",
    )
    # A run refused while that job is followed keeps its refusal on screen: the followed
    # job's refreshes (every 0.7 s) no longer draw over it.
    driver.execute_script(
        "window.realFetch = window.fetch;"
        "window.fetch = (url, init) => String(url).endsWith('/api/v1/jobs') && init && init.method === 'POST'"
        "  ? Promise.resolve(new Response(JSON.stringify({error: {message: 'run refused here'}}),"
        "      {status: 429, headers: {'content-type': 'application/json'}}))"
        "  : window.realFetch(url, init);"
    )
    driver.find_element(By.CSS_SELECTOR, "#run").click()
    wait_until(
        lambda: "run refused here" in driver.find_element(By.CSS_SELECTOR, "#outcome").text,
        "the refused run's message",
    )
    time.sleep(2)
    assert "run refused here" in driver.find_element(By.CSS_SELECTOR, "#outcome").text, \
        "the refusal was drawn over by the followed job"
    driver.execute_script("window.fetch = window.realFetch;")
    driver.execute_script("location.hash = arguments[0]", f"#/tasks/{task_id}")
    page("tasks")
    wait_for('#task #job[data-status="running"]', "the slow job to run")
    # A refused cancel's message stays through the page's refreshes (one a second).
    driver.execute_script(
        "window.realFetch = window.fetch;"
        "window.fetch = (url, init) => String(url).endsWith('/cancel')"
        "  ? Promise.resolve(new Response(JSON.stringify({error: {message: 'cancel refused here'}}),"
        "      {status: 409, headers: {'content-type': 'application/json'}}))"
        "  : window.realFetch(url, init);"
    )
    click("#task .cancel", "the cancel button")
    wait_until(
        lambda: "cancel refused here" in driver.find_element(By.CSS_SELECTOR, "#task .job .error").text,
        "the refused cancel's message",
    )
    time.sleep(2.5)
    still = driver.find_elements(By.CSS_SELECTOR, "#task .job .error")
    assert still and "cancel refused here" in still[0].text, "the refusal was wiped by a refresh"
    driver.execute_script("window.fetch = window.realFetch;")
    click("#task .cancel", "the cancel button")
    wait_for('#task #job[data-status="cancelled"]', "the cancellation")
    wait_for("#task pre.json")
    shown = [block.text for block in driver.find_elements(By.CSS_SELECTOR, "#task pre.json")]
    assert any("work_ms" in text for text in shown), f"the request is shown: {shown}"
    assert any('"asset_id": "asset_' in text for text in shown), f"the file was attached: {shown}"
    shot("task-cancelled")
    driver.get(f"{BASE}/console#/tasks?status=cancelled")
    wait_for("#task-list table")
    rows = driver.find_elements(By.CSS_SELECTOR, "#task-list tbody tr")
    assert [r for r in rows if task_id in r.text], "the cancelled task is listed"
    assert all("cancelled" in r.text for r in rows), "the status filter holds"
    shot("tasks-client")
    print("slow job cancelled", flush=True)

    # A task with a webhook shows where it goes and each delivery's attempts.
    hook = "http://webhook.invalid/hook"
    request = urllib.request.Request(
        f"{BASE}/api/v1/jobs",
        data=json.dumps({"capability": "image.generate", "model": "offline/image",
                         "prompt": "hooked", "webhookUrl": hook}).encode(),
        headers={"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=WAIT_SECS) as answer:
        hooked = json.load(answer)["job"]["id"]
    driver.get(f"{BASE}/console#/tasks/{hooked}")
    shown_hook = wait_for("#task .webhook code", "the webhook's URL")
    assert shown_hook.text == hook, shown_hook.text
    wait_for("#task .webhook tbody tr", "the webhook's delivery row")
    print("a task's webhook and its deliveries shown", flush=True)

    # The admin key added in the same tab: plugins, with a broken one dropped in.
    sign_in(ADMIN_KEY)
    wait_until(lambda: "operator" in driver.find_element(By.ID, "roles").text, "the operator role")
    driver.get(f"{BASE}/console#/plugins")
    page("plugins")
    wait_until(lambda: "demo" in driver.find_element(By.ID, "plugin-list").text, "the demo plugin")
    with open(os.path.join(PLUGINS_DIR, "broken.wasm"), "wb") as broken:
        broken.write(b"\0asm not really")
    click("#reload", "the reload button")
    error = wait_for("#plugin-list .plugin-error", "the broken plugin's error")
    assert error.text.strip(), "the error is worded"
    shot("plugins")
    print("broken plugin's error shown", flush=True)

    # A submit its vendor answers as down counts towards the provider's breaker.
    request = urllib.request.Request(
        f"{BASE}/api/v1/jobs",
        data=json.dumps({"capability": "image.generate", "model": "offline/image",
                         "prompt": "down", "unavailable": "the vendor is down"}).encode(),
        headers={"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=WAIT_SECS).close()
    driver.get(f"{BASE}/console#/workers")
    page("workers")
    wait_until(lambda: "offline" in driver.find_element(By.ID, "worker-list").text, "this host's worker row")
    wait_until(
        lambda: "the vendor is down" in driver.find_element(By.ID, "breaker-list").text,
        "the offline provider's breaker counting its failure",
    )
    shot("workers")
    print("a failing vendor's breaker shown", flush=True)

    driver.get(f"{BASE}/console#/models")
    page("models")
    wait_for('.provider[data-provider="offline"] table')
    shot("models")
    driver.get(f"{BASE}/console#/clients")
    page("clients")
    wait_until(lambda: "partner-a" in driver.find_element(By.TAG_NAME, "main").text, "the clients")
    check_limits()
    shot("clients")
    driver.get(f"{BASE}/console#/tasks")
    page("tasks")
    wait_for("#filter-client")
    wait_for("#task-list table")
    shot("tasks-operator")
    print("operator pages shown", flush=True)

    # A phone-sized screen: nothing wider than the screen, the navigation within reach.
    driver.set_window_size(390, 844)
    for name, where, filled in [
        ("playground", "playground", "#param-width"),
        ("tasks", "tasks", "#task-list table"),
        ("task", f"tasks/{task_id}", "#task pre.json"),
        ("models", "models", '.provider[data-provider="offline"] table'),
        ("plugins", "plugins", "#plugin-list table"),
        ("workers", "workers", "#worker-list table"),
        ("clients", "clients", "#limits-form"),
    ]:
        driver.get(f"{BASE}/console#/{where}")
        wait_for(filled, f"the {name} page on a phone")
        width = driver.execute_script("return window.innerWidth")
        assert width <= 420, f"the phone's screen is {width}px wide"
        overflow = driver.execute_script(
            "return document.scrollingElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, f"{name} is {overflow}px wider than a phone"
        nav_reachable()
        shot(f"phone-{name}")
    # The navigation works there too: from the clients page to the playground by its link.
    click('#nav a[href="#/playground"]', "the playground link")
    wait_for("#param-width", "the playground reached from the navigation")
    print("phone-sized pages fit", flush=True)

    # A client reads the limits the operator set on its account page, and cannot edit them.
    click("#signout", "the sign-out link")
    page("signin")
    sign_in(CLIENT_KEY)
    page("playground")
    driver.get(f"{BASE}/console#/clients")
    page("clients")
    own = '.limits[data-client="partner-a"]'
    wait_until(
        lambda: driver.find_element(By.CSS_SELECTOR, own).text
        == "every model: 30 requests/minute · 4 tasks at once · priority 5",
        "the client's own limits",
    )
    assert not driver.find_elements(By.CSS_SELECTOR, "#limits-form, .edit-limit"), "a client cannot edit limits"
    shot("account")
    print("a client sees its own limits", flush=True)

    # A key revoked while a tab is signed in with it: the next page signs it out, saying why.
    made = admin_post("/admin/clients", {"id": "revoked-soon"})
    click("#signout", "the sign-out link")
    page("signin")
    sign_in(made["key"])
    page("playground")
    wait_until(lambda: driver.find_element(By.ID, "roles").text == "client revoked-soon", "the new client")
    admin_post(f"/admin/clients/revoked-soon/keys/{made['key_id']}/revoke", {})
    driver.get(f"{BASE}/console#/tasks")
    page("signin")
    refusal = wait_for("#signin-outcome .error", "why the tab was signed out")
    assert refusal.text == "Invalid API key.", refusal.text
    assert not driver.find_elements(By.ID, "roles"), "the header still names the revoked key"
    shot("signed-out-after-revoke")
    print("a revoked key signs its tab out", flush=True)


def check_limits():
    """The operator sets a client's limits on the clients page; a refused edit is worded."""
    limits = '.limits[data-client="partner-a"]'
    wait_until(lambda: driver.find_element(By.CSS_SELECTOR, limits).text == "none", "no limits yet")

    def save(model="", **fields):
        Select(wait_for("#limit-client")).select_by_value("partner-a")
        Select(wait_for("#limit-model")).select_by_value(model)
        for name in ["rpm", "tasks", "budget", "priority"]:
            field = driver.find_element(By.ID, f"limit-{name}")
            field.clear()
            if name in fields:
                field.send_keys(str(fields[name]))
        Select(driver.find_element(By.ID, "limit-period")).select_by_value(fields.get("period", ""))
        click("#limits-save", "the save button")

    save(rpm=30, tasks=4, priority=5)
    wait_until(
        lambda: "every model: 30 requests/minute · 4 tasks at once · priority 5"
        in driver.find_element(By.CSS_SELECTOR, limits).text,
        "the client-wide limits shown",
    )
    save(model="offline/video", tasks=1)
    wait_until(
        lambda: "offline/video: 1 task at once" in driver.find_element(By.CSS_SELECTOR, limits).text,
        "the video model's own limit shown",
    )
    stored = admin_get("/admin/clients/partner-a/limits")["limits"]
    assert [(r["model"], r["requests_per_minute"], r["concurrent_tasks"], r["priority"]) for r in stored] == [
        (None, 30, 4, 5),
        ("offline/video", None, 1, None),
    ], stored

    # This host does not enforce credits, so a budget is refused in the API's words.
    save(budget=100, period="day")
    refusal = wait_for("#limits-outcome .error", "the refused budget")
    assert refusal.text == (
        "Budgets count charged credits: set [credits] enforce = true in easel.toml first."
    ), refusal.text
    shot("clients-refused-limit")
    # An edit makes the refusal stale (the browser may block the next save before it is sent).
    driver.find_element(By.ID, "limit-budget").send_keys("0")
    wait_until(
        lambda: not driver.find_elements(By.CSS_SELECTOR, "#limits-outcome .error"),
        "the stale refusal cleared",
    )

    # A row loads into the form from its link; emptied, it is removed.
    click(f'{limits} li[data-model="offline/video"] .edit-limit', "the video model's row")
    assert Select(driver.find_element(By.ID, "limit-model")).first_selected_option.text == "offline/video"
    assert driver.find_element(By.ID, "limit-tasks").get_attribute("value") == "1"
    driver.find_element(By.ID, "limit-tasks").clear()
    click("#limits-save", "the save button")
    wait_until(
        lambda: "offline/video" not in driver.find_element(By.CSS_SELECTOR, limits).text,
        "the video model's row removed",
    )
    assert len(admin_get("/admin/clients/partner-a/limits")["limits"]) == 1
    print("client limits shown and edited", flush=True)


try:
    check()
except BaseException:
    traceback.print_exc()
    try:
        shot("failure")
        print("page text at the failure:\n" + driver.find_element(By.TAG_NAME, "body").text)
        for entry in driver.get_log("browser"):
            print("browser console:", entry)
    except Exception:
        pass
    sys.exit(1)
finally:
    driver.quit()
