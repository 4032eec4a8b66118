// What the browser drivers (play-seek.mjs, play-hls.mjs) share: their common
// flags, launching Debian's headless chromium through playwright-core, and
// the bounds that keep Chromium from outliving the caller.
//
// Bounded: a watchdog closes the browser and exits with code 3 after
// --timeout-ms, and closing stdin (the caller died) does the same. By hand,
// run a driver from a terminal (or `sleep 60 | node ...`), not with stdin
// from /dev/null.

import { chromium } from 'playwright-core';

/// Exit codes every driver shares.
export const EXIT_USAGE = 2;
export const EXIT_TIMED_OUT = 3;
export const EXIT_BROWSER_FAILED = 4;

/// Parses `POSITIONAL... [--timeout-ms N] [--chromium PATH]`; exits 2 with
/// `usage` unless there are between `min` and `max` positional arguments and
/// the timeout is positive and at most `maxTimeoutMs` (if given). `timeoutMs`
/// is the default; the CHROMIUM environment variable overrides
/// /usr/bin/chromium, and --chromium overrides both.
export function parseArgs(argv, { usage, min, max, timeoutMs, maxTimeoutMs = Infinity }) {
  const positional = [];
  let executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--timeout-ms') timeoutMs = Number(argv[++i]);
    else if (argv[i] === '--chromium') executablePath = argv[++i];
    else if (!argv[i].startsWith('--')) positional.push(argv[i]);
    else {
      console.error(`unknown argument ${argv[i]}\nusage: ${usage}`);
      process.exit(EXIT_USAGE);
    }
  }
  if (
    positional.length < min ||
    positional.length > max ||
    !(timeoutMs > 0 && timeoutMs <= maxTimeoutMs) ||
    !executablePath
  ) {
    console.error(`usage: ${usage}`);
    process.exit(EXIT_USAGE);
  }
  return { positional, timeoutMs, executablePath };
}

/// One driver run: `note` logs to stderr with the time since start, `bail`
/// closes the browser and exits, `launch` starts Chromium, `openPage` opens
/// a page in it, `finish` prints the report and exits. The watchdog and the stdin and signal handlers are
/// armed on creation.
export function startDriver(name, timeoutMs) {
  const started = Date.now();
  const since = () => Date.now() - started;
  const note = (msg) => console.error(`${name} +${since()}ms: ${msg}`);
  let browser = null;
  let finishing = false;

  async function bail(code, why) {
    if (finishing) return;
    finishing = true;
    note(why);
    // Closing kills Chromium's process tree; give it 5 s, then exit anyway.
    const hard = setTimeout(() => process.exit(code), 5000);
    hard.unref();
    try {
      if (browser) await browser.close();
    } catch {}
    process.exit(code);
  }

  setTimeout(() => bail(EXIT_TIMED_OUT, `timed out after ${timeoutMs} ms`), timeoutMs).unref();
  process.stdin.on('end', () => bail(EXIT_TIMED_OUT, 'stdin closed: the caller is gone'));
  process.stdin.on('error', () => bail(EXIT_TIMED_OUT, 'stdin error: the caller is gone'));
  process.stdin.resume();
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
    process.on(signal, () => bail(EXIT_TIMED_OUT, `got ${signal}`));
  }

  /// Starts headless Chromium, or exits 4 if it cannot.
  async function launch(executablePath) {
    try {
      browser = await chromium.launch({
        executablePath,
        headless: true,
        chromiumSandbox: false,
        // The handlers above close the browser; Playwright's would race them.
        handleSIGINT: false,
        handleSIGTERM: false,
        handleSIGHUP: false,
        timeout: 15000,
        args: [
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          '--autoplay-policy=no-user-gesture-required',
        ],
      });
    } catch (e) {
      await bail(EXIT_BROWSER_FAILED, `chromium did not start: ${e.message}`);
      // Another bail (the watchdog, a signal) is already closing; wait for its exit.
      return new Promise(() => {});
    }
    browser.on('disconnected', () => bail(EXIT_BROWSER_FAILED, 'chromium disconnected'));
    return browser;
  }

  /// A fresh context and page in the launched browser; page actions time
  /// out after `actionTimeoutMs`.
  async function openPage(actionTimeoutMs = 10000) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(actionTimeoutMs);
    return { context, page };
  }

  /// Closes the browser, prints `report` as one JSON line and exits with
  /// `code`; does nothing if a bail is already under way.
  async function finish(report, code) {
    if (finishing) return;
    finishing = true;
    await browser.close();
    process.stdout.write(JSON.stringify(report) + '\n');
    process.exit(code);
  }

  return { since, note, bail, launch, openPage, finish };
}
