// Drives the dashboard in headless Chromium for tests/api/dashboard.rs: logs in with a token,
// waits for the feed, says READY (the Rust side then brings an agent online and plays a call),
// and checks that presence, the live call, its transcript, sentiment and talk signals appear, and
// a lead's SMS in the messages list (not as a call).
// Exits 0 on success; saves a screenshot either way.
import { chromium } from "playwright-core";

const { DASHBOARD_URL, TOKEN, SCREENSHOT, EXPECT_TEXT, EXPECT_USER, EXPECT_MESSAGE } = process.env;
const WAIT = { timeout: 60_000 };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--autoplay-policy=no-user-gesture-required"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const problems = [];
page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
page.on("console", (message) => {
  if (message.type() === "error") problems.push(`console error: ${message.text()}`);
});

let failed = null;
try {
  await page.goto(DASHBOARD_URL);
  await page.getByTestId("token").fill(TOKEN);
  await page.getByTestId("login-button").click();
  await page.getByTestId("status").filter({ hasText: "live" }).waitFor(WAIT);
  await page.locator('#presence li[data-user="manager-1"]').waitFor(WAIT);
  console.log("READY");

  // Presence: the agent the test brings online joins the list.
  await page.locator(`#presence li[data-user="${EXPECT_USER}"]`).waitFor(WAIT);
  console.log(`presence shows ${EXPECT_USER}`);

  // The live call appears; open it.
  const row = page.locator("#calls tr").first();
  await row.waitFor(WAIT);
  await row.click();
  await page.getByTestId("call-view").waitFor({ state: "visible", ...WAIT });
  // Opening a call sets the manager's own presence to monitoring it.
  await page
    .locator('#presence li[data-user="manager-1"] .badge')
    .filter({ hasText: "monitoring" })
    .waitFor(WAIT);

  // Its transcript, final with sentiment; the sentiment gauge in the calls list.
  const final = page.locator('#transcript li[data-final="true"]').filter({
    hasText: new RegExp(EXPECT_TEXT, "i"),
  });
  await final.first().waitFor(WAIT);
  const sentiment = await final.first().getByTestId("sentiment").textContent();
  console.log(`transcript: ${await final.first().textContent()}`);
  if (!/^(positive|neutral|negative) -?\d\.\d\d$/.test(sentiment)) {
    throw new Error(`sentiment shows as ${JSON.stringify(sentiment)}`);
  }
  await page.locator("#calls tr meter").first().waitFor(WAIT);
  const points = await page.locator("#sentiment-inbound").getAttribute("points");
  if (!points) throw new Error("the sentiment chart has no points");
  console.log(`sentiment: ${sentiment}; chart ${points}`);

  // Listen-in: Opus packets arrive and WebCodecs decodes them for playback.
  await page.getByTestId("listen").click();
  await page.waitForFunction(() => window.winnerrListen.decoded >= 25, null, WAIT);
  const heard = await page.evaluate(() => ({ ...window.winnerrListen, socket: undefined,
    context: undefined, decoders: undefined }));
  console.log(`listen-in: ${heard.packets} packets, ${heard.decoded} decoded`);

  // The call's talk signals (every 10 s of call, and at its end).
  await page.getByTestId("signal").first().waitFor(WAIT);
  const share = await page.getByTestId("signal").first().textContent();
  if (!/^\d+%$/.test(share)) throw new Error(`the agent's share shows as ${JSON.stringify(share)}`);
  console.log(`signals: agent's share ${share}`);

  // The SMS a lead sent during the call is listed with its sentiment, and is not a call.
  const message = page.locator("#messages li").filter({ hasText: EXPECT_MESSAGE });
  await message.first().waitFor(WAIT);
  console.log(`message: ${await message.first().textContent()}`);
  const rows = await page.locator("#calls tr").count();
  if (rows !== 1) throw new Error(`${rows} rows in the calls list: a message shows as a call`);
  if (problems.length) throw new Error(problems.join("; "));
} catch (error) {
  failed = error;
} finally {
  await page.screenshot({ path: SCREENSHOT, fullPage: true }).catch(() => {});
  await browser.close();
}
if (failed) {
  console.log(`FAILED: ${failed.message}`);
  process.exit(1);
}
console.log("PASS");
