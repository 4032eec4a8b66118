// Plays an HLS master playlist with hls.js in headless Chromium for a few
// seconds and says whether it worked, as one JSON line on stdout
// (tests/ingest_browser.rs reads it):
//
//   node tools/browser/play-hls.mjs MASTER_URL|PAGE_URL [--timeout-ms N] [--chromium PATH]
//
//   {"played":3.02,"levels":2,"errors":[],"ok":true}
//
// played: seconds the position advanced after play(); levels: the levels
// (renditions) hls.js found in the master playlist; errors: hls.js's fatal
// errors, the media element's error, a failed play() and uncaught page
// exceptions; ok: played >= 1 s and no errors.
//
// A URL whose path ends in .m3u8 is the master playlist: the driver makes up
// a page for it on the same origin (/.play-hls/hls-player.html?src=URL, a
// dot-name no server of ours serves) and answers that request itself with
// hls-player.html, so the playlist and segments are same-origin fetches and
// the server needs no CORS. Any other URL is a page that works like
// hls-player.html (it may be a copy of it, with ?src=). Either way every
// request for .../hls.min.js is answered from node_modules/hls.js (the
// pinned version): hls.js never comes from the network.
//
// Bounded (driver.mjs): a watchdog closes the browser and exits with code 3
// after --timeout-ms (default 45000, at most 60000), and closing stdin does
// the same. By hand, give it a stdin that stays open:
// `node play-hls.mjs URL < <(sleep 70)`.
//
// Exit codes: 0 ok, 1 the report says not ok, 2 bad usage, 3 timed out,
// 4 the browser failed to start or crashed.

import { readFileSync } from 'node:fs';
import { EXIT_BROWSER_FAILED, EXIT_USAGE, parseArgs, startDriver } from './driver.mjs';

/// Play until the position has advanced this far (or the clip ends).
const PLAY_SECONDS = 3;
/// The least playback that counts as working.
const OK_SECONDS = 1.0;
/// How long hls.js may take to load and parse the master playlist.
const MANIFEST_WAIT_MS = 10000;
/// The longest the driver plays, however slow the start.
const PLAY_WAIT_MS = 15000;
/// Kept back from the watchdog for closing Chromium and printing the report.
const CLOSE_MARGIN_MS = 8000;
/// Where the made-up player page lives on the master playlist's origin.
const PLAYER_PATH = '/.play-hls/hls-player.html';

const {
  positional: [target],
  timeoutMs,
  executablePath,
} = parseArgs(process.argv.slice(2), {
  usage: 'play-hls.mjs MASTER_URL|PAGE_URL [--timeout-ms N (<= 60000)] [--chromium PATH]',
  min: 1,
  max: 1,
  timeoutMs: 45000,
  maxTimeoutMs: 60000,
});
const { since, note, bail, launch, openPage, finish } = startDriver('play-hls', timeoutMs);

const here = new URL('.', import.meta.url);
const hlsJs = readFileSync(new URL('node_modules/hls.js/dist/hls.min.js', here));
const playerPage = readFileSync(new URL('hls-player.html', here));

let targetUrl;
try {
  targetUrl = new URL(target);
} catch {
  await bail(EXIT_USAGE, `not a URL: ${target}`);
}
const isMaster = targetUrl.pathname.endsWith('.m3u8');
const pageUrl = isMaster
  ? new URL(`${PLAYER_PATH}?src=${encodeURIComponent(targetUrl.href)}`, targetUrl).href
  : targetUrl.href;

async function main() {
  await launch(executablePath);
  const { page } = await openPage();
  const errors = [];

  await page.route(
    (url) => url.pathname.endsWith('/hls.min.js'),
    (route) => route.fulfill({ status: 200, contentType: 'text/javascript', body: hlsJs }),
  );
  if (isMaster) {
    await page.route(
      (url) => url.origin === targetUrl.origin && url.pathname === PLAYER_PATH,
      (route) => route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: playerPage }),
    );
  }
  page.on('pageerror', (e) => {
    note(`page exception: ${e.message}`);
    errors.push({ type: 'pageerror', details: e.message });
  });
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') note(`console ${m.type()}: ${m.text()}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) note(`${r.status()} for ${r.url()}`);
  });
  page.on('requestfailed', (r) => note(`request failed: ${r.url()}: ${r.failure()?.errorText}`));

  note(`loading ${pageUrl}`);
  const response = await page.goto(pageUrl, { waitUntil: 'load' });
  if (!response || response.status() !== 200) {
    errors.push({ type: 'page', details: `the player page answered ${response?.status() ?? 'nothing'}` });
  }

  const playWaitMs = Math.max(2000, Math.min(PLAY_WAIT_MS, timeoutMs - since() - MANIFEST_WAIT_MS - CLOSE_MARGIN_MS));
  const seen = await page.evaluate(
    async ([manifestWaitMs, playWaitMs, playSeconds]) => {
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      const state = window.hlsPlayer ?? { levels: 0, manifest: false, fatal: [{ type: 'page', details: 'no window.hlsPlayer' }], nonFatal: 0 };
      const video = document.querySelector('video');
      let deadline = performance.now() + manifestWaitMs;
      while (performance.now() < deadline && !state.manifest && state.fatal.length === 0) await sleep(25);
      const out = { levels: state.levels, manifest: state.manifest, playError: null, start: null };
      if (state.manifest && state.fatal.length === 0 && video) {
        video.muted = true;
        out.start = video.currentTime;
        try {
          await video.play();
        } catch (e) {
          out.playError = String(e);
        }
        deadline = performance.now() + playWaitMs;
        while (
          performance.now() < deadline &&
          !out.playError &&
          state.fatal.length === 0 &&
          !video.ended &&
          video.currentTime - out.start < playSeconds
        ) {
          await sleep(25);
        }
        video.pause();
      }
      return {
        ...out,
        levels: state.levels,
        fatal: state.fatal,
        nonFatal: state.nonFatal,
        currentTime: video?.currentTime ?? null,
        duration: video?.duration ?? null,
        ended: video?.ended ?? null,
        readyState: video?.readyState ?? null,
        level: window.hls?.currentLevel ?? null,
      };
    },
    [MANIFEST_WAIT_MS, playWaitMs, PLAY_SECONDS],
  );

  errors.unshift(...seen.fatal);
  if (seen.playError) errors.push({ type: 'play', details: seen.playError });
  if (!seen.manifest && seen.fatal.length === 0) {
    errors.push({ type: 'manifest', details: `hls.js parsed no manifest within ${MANIFEST_WAIT_MS} ms` });
  }
  const played = seen.start === null ? 0 : Math.round((seen.currentTime - seen.start) * 1000) / 1000;
  note(
    `manifest=${seen.manifest} levels=${seen.levels} level=${seen.level} played=${played}s ` +
      `(to ${seen.currentTime} of ${seen.duration}, ended=${seen.ended}, readyState=${seen.readyState}) ` +
      `non-fatal errors=${seen.nonFatal}`,
  );
  const ok = played >= OK_SECONDS && errors.length === 0;
  await finish({ played, levels: seen.levels, errors, ok }, ok ? 0 : 1);
}

main().catch((e) => bail(EXIT_BROWSER_FAILED, `driver failed: ${e.stack || e}`));
