// Plays and seeks every <video> of a page in headless Chromium and reports
// what happened as one JSON object on stdout (tests/browser.rs reads it).
//
//   node tools/browser/play-seek.mjs URL [--timeout-ms N] [--chromium PATH]
//
// For each <video>, one after the other: mute, play(), wait until the
// position advances, set currentTime to the middle of the duration, wait for
// `seeked`, then for about a second more of playback. Every media request the
// browser sends is recorded (Range header, status, time), so the caller can
// tell which ones the seek caused.
//
// The page is ringcast's --index page, whose Content-Security-Policy forbids
// scripts: the code below runs through the DevTools protocol, which the
// policy does not govern.
//
// Bounded (driver.mjs, shared with play-hls.mjs): a watchdog closes the
// browser and exits with code 3 after --timeout-ms (default 40000), and
// closing stdin (the caller died) does the same, so Chromium never outlives
// the test. By hand, run it from a terminal
// (or `sleep 60 | node ...`), not with stdin from /dev/null.
//
// Exit codes: 0 report printed (the caller judges it), 2 bad usage,
// 3 timed out, 4 the browser failed to start or crashed.

import { EXIT_BROWSER_FAILED, parseArgs, startDriver } from './driver.mjs';

const {
  positional: [url],
  timeoutMs,
  executablePath,
} = parseArgs(process.argv.slice(2), {
  usage: 'play-seek.mjs URL [--timeout-ms N] [--chromium PATH]',
  min: 1,
  max: 1,
  timeoutMs: 40000,
});
const { since, note, bail, launch, openPage, finish } = startDriver('play-seek', timeoutMs);

// Every request the page makes, in the order Chromium sent them.
const requests = [];

function phaseOf(userAgent) {
  return /ringcast-phase\/(\S+)/.exec(userAgent ?? '')?.[1] ?? null;
}

function isMedia(request) {
  return request.resourceType() === 'media' || /\.(mp4|webm|mkv|m4a|ogg|mp3)(\?|$)/.test(request.url());
}

async function main() {
  await launch(executablePath);
  const { context, page } = await openPage();

  const byRequest = new Map();
  const pendingHeaders = [];
  page.on('request', (request) => {
    if (!isMedia(request)) return;
    const entry = {
      url: request.url(),
      path: new URL(request.url()).pathname,
      at_ms: since(),
      phase: null,
      range: null,
      status: null,
      failure: null,
    };
    requests.push(entry);
    byRequest.set(request, entry);
    // The headers as sent (with Range and the phase's User-Agent) come later.
    pendingHeaders.push(
      request
        .allHeaders()
        .then((headers) => {
          entry.range = headers['range'] ?? null;
          entry.phase = phaseOf(headers['user-agent']);
        })
        .catch((e) => (entry.headers_error = String(e))),
    );
  });
  page.on('response', (response) => {
    const entry = byRequest.get(response.request());
    if (!entry) return;
    entry.status = response.status();
    entry.response_at_ms = since();
  });
  page.on('requestfailed', (request) => {
    const entry = byRequest.get(request);
    if (entry) entry.failure = request.failure()?.errorText ?? 'failed';
  });
  // Label every request with the phase it was sent in, through the
  // User-Agent, so that ringcast's access log tells the phases apart too.
  const cdp = await context.newCDPSession(page);
  const baseUserAgent = (await cdp.send('Browser.getVersion')).userAgent;
  const setPhase = (name) =>
    cdp.send('Network.setUserAgentOverride', { userAgent: `${baseUserAgent} ringcast-phase/${name}` });
  await setPhase('load');

  const pageResponse = await page.goto(url, { waitUntil: 'load' });
  // Playwright gives {} rather than null for a page fetched without TLS.
  const security = pageResponse ? await pageResponse.securityDetails() : null;
  const pageInfo = {
    status: pageResponse?.status() ?? null,
    content_security_policy: pageResponse ? await pageResponse.headerValue('content-security-policy') : null,
    // Over HTTPS: the verified certificate's issuer and subject, and the TLS version; null over HTTP.
    security: security && Object.keys(security).length > 0 ? security : null,
  };
  const sources = await page.$$eval('video', (videos) => videos.map((v) => v.getAttribute('src')));
  note(`page loaded with ${sources.length} videos`);

  const videos = [];
  for (let i = 0; i < sources.length; i++) {
    const result = { src: sources[i] };
    videos.push(result);
    // Phase 1: play until the position advances.
    result.before_seek = await page.evaluate(
      async ([i, waitMs]) => {
        const v = document.querySelectorAll('video')[i];
        v.scrollIntoView();
        v.muted = true;
        const deadline = performance.now() + waitMs;
        let playError = null;
        try {
          await v.play();
        } catch (e) {
          playError = String(e);
        }
        while (performance.now() < deadline && !v.error && !(v.currentTime > 0.3 && !v.paused)) {
          await new Promise((r) => setTimeout(r, 25));
        }
        return {
          play_error: playError,
          current_time: v.currentTime,
          duration: v.duration,
          paused: v.paused,
          ready_state: v.readyState,
          error: v.error ? { code: v.error.code, message: v.error.message } : null,
        };
      },
      [i, 10000],
    );
    note(`${sources[i]}: playing at ${result.before_seek.current_time}`);
    // Phase 2: seek to the middle, wait for `seeked`, then for more playback.
    // Requests from here on carry this phase in their User-Agent.
    result.phase = `seek-${i}`;
    await setPhase(result.phase);
    result.seek_requested_at_ms = since();
    const after = await page.evaluate(
      async ([i, waitMs, playMs]) => {
        const v = document.querySelectorAll('video')[i];
        const events = [];
        const t0 = performance.now();
        const names = ['seeking', 'seeked', 'waiting', 'playing', 'canplay', 'stalled', 'error', 'ended', 'pause'];
        const log = (e) => events.push({ type: e.type, at_ms: Math.round(performance.now() - t0), t: v.currentTime });
        for (const n of names) v.addEventListener(n, log);
        const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
        const target = v.duration / 2;
        let seeked = false;
        v.addEventListener('seeked', () => (seeked = true), { once: true });
        v.currentTime = target;
        let deadline = performance.now() + waitMs;
        while (performance.now() < deadline && !seeked && !v.error) await sleep(25);
        const atSeeked = { t: v.currentTime, at_ms: Math.round(performance.now() - t0) };
        // Let it play on: at least playMs, and until it has advanced 1 s.
        const playFrom = performance.now();
        deadline = performance.now() + waitMs;
        while (
          performance.now() < deadline &&
          !v.error &&
          !(performance.now() - playFrom >= playMs && v.currentTime >= atSeeked.t + 1.0)
        ) {
          await sleep(25);
        }
        for (const n of names) v.removeEventListener(n, log);
        const buffered = [];
        for (let k = 0; k < v.buffered.length; k++) buffered.push([v.buffered.start(k), v.buffered.end(k)]);
        const state = {
          target,
          seeked,
          at_seeked: atSeeked,
          current_time: v.currentTime,
          paused: v.paused,
          ready_state: v.readyState,
          duration: v.duration,
          buffered,
          error: v.error ? { code: v.error.code, message: v.error.message } : null,
          events,
        };
        v.pause();
        return state;
      },
      [i, 10000, 1000],
    );
    Object.assign(result, after);
    note(`${sources[i]}: seeked=${after.seeked} to ${after.at_seeked.t}, now ${after.current_time}`);
  }
  // Let the last requests' headers land (bounded: a request that never got
  // its headers reports range and phase as null).
  await Promise.race([Promise.allSettled(pendingHeaders), new Promise((r) => setTimeout(r, 2000))]);
  await finish({ url, page: pageInfo, videos, requests, elapsed_ms: since() }, 0);
}

main().catch((e) => bail(EXIT_BROWSER_FAILED, `driver failed: ${e.stack || e}`));
