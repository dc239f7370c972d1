// The dashboard. Plain JS over pkgseed's own Tauri commands (no framework, no bundler). It polls the engine's
// status once a second while the window is open; closing the window destroys it, so nothing polls in the tray.
'use strict';

const invoke = window.__TAURI__.core.invoke;
const $ = (id) => document.getElementById(id);
const KIB = 1024;
const GIB = 1024 * 1024 * 1024;
const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
// Five minutes of one-second samples.
const CHART_SAMPLES = 300;

let config = null; // the settings in force, as the engine returned them
// Bumped when a Start on login change from this page begins and ends: a poll's answer started before either is stale
// and is not shown (the box follows changes from the tray, and never flips back under the user's click).
let autostartChanges = 0;
let lastCounters = null; // [time ms, bytes uploaded, bytes downloaded] at the last poll
const upSamples = []; // bytes per second, one per poll
const downSamples = [];

function showError(err) {
  const box = $('error');
  if (!err) { box.hidden = true; return; }
  // Errors arrive as the engine's {code, message}; anything else is shown as text.
  box.textContent = err.code ? `${err.message} (${err.code})` : String(err);
  box.hidden = false;
}

function bytes(n) {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}
const count = (n) => n.toLocaleString('en-US');

function stateOf(status) {
  if (status.paused) return 'paused';
  if (!status.first_scan_done) return 'indexing';
  return 'seeding';
}

function renderStatus(status) {
  const state = stateOf(status);
  $('state').textContent = state;
  $('state').className = `badge ${state}`;
  $('pause').textContent = status.paused ? 'Resume seeding' : 'Pause seeding';
  $('pause').dataset.paused = String(status.paused);
  $('peer-id').textContent = status.peer_id;
  $('network').textContent = status.network;
  $('identity-storage').textContent = status.identity_storage === 'keyring' ? 'OS keyring' : 'file (no keyring)';
  $('identity-warning').textContent = status.identity_warning || '';
  $('identity-warning').hidden = !status.identity_warning;
  $('restart-required').hidden = !status.restart_required;
  $('peers').textContent = count(status.connected_peers);
  $('served').textContent = `${bytes(status.bytes_served)} in ${count(status.blocks_served)} blocks`;
  $('announced').textContent = `${count(status.announced_keys)} (${count(status.announce_queue_len)} queued)`;
  $('index-disk').textContent = bytes(status.index_disk_bytes);

  const scan = status.scan;
  const total = Math.max(scan.files_total, 1);
  $('scan-progress').max = total;
  $('scan-progress').value = status.first_scan_done ? total : scan.files_done;
  $('scan-label').textContent = status.first_scan_done
    ? `Indexed ${count(scan.files_total)} files (${bytes(scan.bytes_hashed)} hashed in the last scan)`
    : `First index: ${count(scan.files_done)} of ${count(scan.files_total)} files, ${bytes(scan.bytes_hashed)} hashed`;

  renderEcosystems(status);
  renderOrigins(status);
  renderMostServed(status.most_served || []);
  const unseedable = status.unseedable_caches || [];
  $('unseedable-card').hidden = unseedable.length === 0;
  $('unseedable').replaceChildren(...unseedable.map((c) => {
    const li = document.createElement('li');
    li.textContent = Object.values(c).join(' — ');
    return li;
  }));
}

// Rates from the deltas of the engine's counters: bitswap bytes plus the rest of the node's TCP payload (overhead),
// the same traffic the caps and the totals count.
function sample(status) {
  const now = Date.now();
  const uploaded = status.limits.bytes_uploaded + (status.limits.overhead_bytes_uploaded || 0);
  const downloaded = status.limits.bytes_downloaded + (status.limits.overhead_bytes_downloaded || 0);
  let up = 0;
  let down = 0;
  if (lastCounters) {
    const secs = (now - lastCounters[0]) / 1000;
    if (secs > 0) {
      // A counter that went back (the engine restarted) counts as no traffic.
      up = Math.max(0, uploaded - lastCounters[1]) / secs;
      down = Math.max(0, downloaded - lastCounters[2]) / secs;
    }
  }
  lastCounters = [now, uploaded, downloaded];
  upSamples.push(up);
  downSamples.push(down);
  while (upSamples.length > CHART_SAMPLES) { upSamples.shift(); downSamples.shift(); }
  $('up-rate').textContent = `${bytes(up)}/s`;
  $('down-rate').textContent = `${bytes(down)}/s`;
  drawChart();
}

function renderTotals(traffic) {
  const periods = { today: traffic.today, month: traffic.this_month, all: traffic.all_time };
  for (const [id, t] of Object.entries(periods)) {
    $(`${id}-up`).textContent = bytes(t.uploaded_bytes);
    $(`${id}-down`).textContent = bytes(t.downloaded_bytes);
  }
}

function drawChart() {
  const canvas = $('chart');
  const ctx = canvas.getContext('2d');
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const upPeak = Math.max(0, ...upSamples);
  const downPeak = Math.max(0, ...downSamples);
  // The peaks on screen, in bytes per second (also what the tests read).
  canvas.dataset.upPeak = String(Math.round(upPeak));
  canvas.dataset.downPeak = String(Math.round(downPeak));
  canvas.dataset.samples = String(upSamples.length);
  const max = Math.max(1024, upPeak, downPeak);
  const css = getComputedStyle(document.documentElement);
  ctx.strokeStyle = css.getPropertyValue('--line');
  ctx.strokeRect(0.5, 0.5, w - 1, h - 1);
  const line = (samples, colour) => {
    ctx.beginPath();
    samples.forEach((v, i) => {
      const x = w - (samples.length - 1 - i) * (w / CHART_SAMPLES);
      const y = h - 2 - (v / max) * (h - 4);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.stroke();
  };
  line(downSamples, css.getPropertyValue('--down'));
  line(upSamples, css.getPropertyValue('--up'));
  ctx.fillStyle = css.getPropertyValue('--muted');
  ctx.fillText(`${bytes(max)}/s`, 4, 12);
}

let ecosystemList = [];
function renderEcosystems(status) {
  const body = $('ecosystems').tBodies[0];
  if (body.rows.length !== ecosystemList.length) {
    body.replaceChildren(...ecosystemList.map((eco) => {
      const tr = document.createElement('tr');
      tr.innerHTML = `<td></td><td><input type="checkbox" id="eco-${eco}"></td><td class="n"></td><td class="b"></td>`
        + `<td class="cache mono" id="cache-${eco}"></td>`;
      tr.cells[0].textContent = eco;
      tr.querySelector('input').addEventListener('change', (e) => toggleEcosystem(eco, e.target.checked));
      return tr;
    }));
  }
  ecosystemList.forEach((eco, i) => {
    const row = body.rows[i];
    const counts = status.ecosystems[eco] || { artifacts: 0, bytes: 0 };
    row.querySelector('.n').textContent = count(counts.artifacts);
    row.querySelector('.b').textContent = bytes(counts.bytes);
    // Where the cache is (the enabled ecosystems' directories; a missing one is not used yet).
    const caches = (status.caches || []).filter((c) => c.ecosystem === eco);
    const cell = row.querySelector('.cache');
    cell.textContent = caches.map((c) => c.path).join('\n');
    cell.classList.toggle('absent', caches.length > 0 && caches.every((c) => !c.present));
    cell.title = caches.map((c) => `${c.path}${c.present ? '' : ' (not found)'}`).join('\n');
    const box = row.querySelector('input');
    if (config && document.activeElement !== box) {
      box.checked = !(config.ecosystems[eco] && config.ecosystems[eco].enabled === false);
    }
  });
}

function renderMostServed(list) {
  $('most-served-empty').hidden = list.length > 0;
  $('most-served').tBodies[0].replaceChildren(...list.map((a) => {
    const tr = document.createElement('tr');
    tr.innerHTML = '<td></td><td></td><td class="n"></td>';
    tr.cells[0].textContent = a.ecosystem;
    tr.cells[1].textContent = `${a.name} ${a.version}`;
    tr.cells[2].textContent = bytes(a.bytes_served);
    return tr;
  }));
}

// A scope origin of an npm registry (`<registry>@scope/`, npm and yarn) → the mark covering every scope of that
// registry, `<registry>@*` (the engine's rule: docs/design.md, "Provenance"); null for any other origin.
function scopeWildcard(o) {
  if (o.ecosystem !== 'npm' && o.ecosystem !== 'yarn') return null;
  const match = /^(https?:\/\/.+\/)@[^/]+\/$/.exec(o.origin);
  return match ? `${match[1]}@*` : null;
}

function renderOrigins(status) {
  const body = $('origins').tBodies[0];
  const origins = status.origins || [];
  if (origins.length === 0) return;
  const marked = config ? config.origins.public.join(' ') : '';
  const key = marked + origins.map((o) => `${o.ecosystem}/${o.origin}/${o.provenance}/${o.artifacts}`).join('|');
  if (body.dataset.key === key) return;
  body.dataset.key = key;
  body.replaceChildren(...origins.map((o) => {
    const tr = document.createElement('tr');
    tr.innerHTML = '<td></td><td></td><td></td><td><select>'
      + '<option value="auto">auto</option><option value="public">public</option>'
      + '<option value="private">private</option></select> <span class="hint"></span></td>';
    tr.cells[0].textContent = o.ecosystem;
    tr.cells[1].textContent = o.origin;
    tr.cells[1].title = o.evidence;
    tr.cells[2].textContent = count(o.artifacts);
    tr.querySelector('.hint').textContent = o.provenance;
    const select = tr.querySelector('select');
    const marks = config ? config.origins : { public: [], private: [] };
    select.value = marks.public.includes(o.origin) ? 'public' : marks.private.includes(o.origin) ? 'private' : 'auto';
    select.addEventListener('change', () => markOrigin(o.origin, select.value));
    const wildcard = scopeWildcard(o);
    if (wildcard) {
      const all = marks.public.includes(wildcard);
      const button = document.createElement('button');
      button.className = 'all-scopes';
      button.textContent = all ? 'Undo all scopes public' : 'All scopes public';
      button.title = `${all ? 'Remove' : 'Add'} the mark ${wildcard}: every scope of this registry public, except a `
        + 'scope marked private and the scopes of a registry your npm config holds credentials for.';
      button.addEventListener('click', () => markOrigin(wildcard, all ? 'auto' : 'public'));
      tr.cells[3].append(' ', button);
    }
    return tr;
  }));
}

async function save(next) {
  try {
    config = await invoke('save_config', { config: next });
    showError(null);
    return true;
  } catch (err) {
    showError(err);
    return false;
  }
}

async function toggleEcosystem(eco, enabled) {
  const next = structuredClone(config);
  next.ecosystems[eco] = { enabled };
  await save(next);
}

async function markOrigin(origin, mark) {
  const next = structuredClone(config);
  next.origins.public = next.origins.public.filter((o) => o !== origin);
  next.origins.private = next.origins.private.filter((o) => o !== origin);
  if (mark === 'public') next.origins.public.push(origin);
  if (mark === 'private') next.origins.private.push(origin);
  await save(next);
}

const minutesToTime = (m) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
function timeToMinutes(text) {
  const match = /^(\d{1,2}):(\d{2})/.exec(text || '');
  return match ? Number(match[1]) * 60 + Number(match[2]) : NaN;
}

function fillLimits() {
  const l = config.limits;
  $('upload-limit').value = Math.round(l.upload_bytes_per_sec / KIB);
  $('download-limit').value = Math.round(l.download_bytes_per_sec / KIB);
  $('alt-upload-limit').value = Math.round(l.alt_upload_bytes_per_sec / KIB);
  $('alt-download-limit').value = Math.round(l.alt_download_bytes_per_sec / KIB);
  $('alt-enabled').checked = l.alt_schedule.enabled;
  DAYS.forEach((d) => { $(`day-${d}`).checked = l.alt_schedule.days.includes(d); });
  $('alt-start').value = minutesToTime(l.alt_schedule.start_minute_of_day);
  $('alt-end').value = minutesToTime(l.alt_schedule.end_minute_of_day);
  $('pause-battery').checked = l.pause_on_battery;
  $('battery-percent').value = l.pause_on_battery_below_percent;
  $('pause-metered').checked = l.pause_on_metered;
  $('monthly-cap').value = Math.round(l.monthly_upload_bytes / GIB);
  $('disk-cap').value = Math.round(l.disk_bytes / GIB);
}

// Reads a whole non-negative number from a field; a bad value names the field, as the engine's errors name keys.
function whole(id, label) {
  const text = $(id).value.trim();
  const n = Number(text === '' ? '0' : text);
  if (!Number.isInteger(n) || n < 0) throw { code: 'input', message: `${label} must be a whole number, 0 or more` };
  return n;
}

async function saveLimits(event) {
  event.preventDefault();
  const message = $('limits-message');
  const next = structuredClone(config);
  try {
    next.limits = {
      upload_bytes_per_sec: whole('upload-limit', 'Upload') * KIB,
      download_bytes_per_sec: whole('download-limit', 'Download') * KIB,
      alt_upload_bytes_per_sec: whole('alt-upload-limit', 'Alternative upload') * KIB,
      alt_download_bytes_per_sec: whole('alt-download-limit', 'Alternative download') * KIB,
      alt_schedule: {
        enabled: $('alt-enabled').checked,
        days: DAYS.filter((d) => $(`day-${d}`).checked),
        start_minute_of_day: timeToMinutes($('alt-start').value),
        end_minute_of_day: timeToMinutes($('alt-end').value),
      },
      pause_on_battery: $('pause-battery').checked,
      pause_on_battery_below_percent: whole('battery-percent', 'Battery threshold'),
      pause_on_metered: $('pause-metered').checked,
      monthly_upload_bytes: whole('monthly-cap', 'Monthly upload cap') * GIB,
      disk_bytes: whole('disk-cap', 'Disk cap') * GIB,
    };
    if (Number.isNaN(next.limits.alt_schedule.start_minute_of_day)
      || Number.isNaN(next.limits.alt_schedule.end_minute_of_day)) {
      throw { code: 'input', message: 'The schedule needs a start and an end time' };
    }
  } catch (err) {
    message.textContent = err.message;
    message.className = 'bad';
    return;
  }
  try {
    config = await invoke('save_config', { config: next });
    fillLimits();
    message.textContent = 'Saved';
    message.className = 'ok';
  } catch (err) {
    message.textContent = err.code ? `${err.message} (${err.code})` : String(err);
    message.className = 'bad';
  }
}

async function poll() {
  try {
    const changesBefore = autostartChanges;
    const [status, autostart] = await Promise.all([invoke('get_status'), invoke('get_autostart')]);
    renderStatus(status);
    renderTotals(status.traffic);
    sample(status);
    if (autostartChanges === changesBefore) $('autostart').checked = autostart;
    document.body.dataset.ready = 'true';
  } catch (err) {
    showError(err);
    $('state').textContent = 'error';
    $('state').className = 'badge error';
  }
}

async function init() {
  $('alt-days').replaceChildren(...DAYS.map((d) => {
    const label = document.createElement('label');
    label.innerHTML = `<input type="checkbox" id="day-${d}"> ${d}`;
    return label;
  }));
  $('limits').addEventListener('submit', saveLimits);
  $('pause').addEventListener('click', async () => {
    try {
      await invoke('set_paused', { paused: $('pause').dataset.paused !== 'true' });
      await poll();
    } catch (err) { showError(err); }
  });
  $('autostart').addEventListener('change', async (e) => {
    autostartChanges++;
    try {
      e.target.checked = await invoke('set_autostart', { enabled: e.target.checked });
    } catch (err) { showError(err); }
    autostartChanges++;
  });
  try {
    ecosystemList = await invoke('list_ecosystems');
    config = await invoke('get_config');
    fillLimits();
  } catch (err) {
    showError(err);
  }
  await poll();
  setInterval(poll, 1000);
}

init();
