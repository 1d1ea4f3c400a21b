// jasmin-sfu demo page: a performer publishes camera + microphone, a viewer
// watches. Speaks signaling v1 (docs/signaling.md) over ws(s)://<host>/ws with
// the browser's own WebRTC. No trickle ICE: SDP is sent once gathering is done.
'use strict';

const PROTOCOL = 'jasmin/1';

// ---------------------------------------------------------------- signaling

class SignalingError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
    this.detail = message;
  }
}

class Signaling {
  constructor(url) {
    this.url = url;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map(); // request id -> {resolve, reject}
    this.handlers = new Map(); // event name -> [fn]
    this.onerror = () => {};   // an `error` frame matching no request
    this.onclose = () => {};
  }

  // Opens the websocket and says hello; resolves with the welcome frame.
  connect(client = 'demo-page') {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      let welcomed = false;
      ws.onopen = () => this.send({ type: 'hello', protocol: PROTOCOL, client });
      ws.onmessage = (ev) => {
        let frame;
        try { frame = JSON.parse(ev.data); } catch { return; }
        if (frame.type === 'welcome') { welcomed = true; resolve(frame); }
        else if (frame.type === 'response') this.settle(frame);
        else if (frame.type === 'event') this.emit(frame.event, frame.data);
        else if (frame.type === 'error') {
          const err = new SignalingError(frame.error.code, frame.error.message);
          if (!welcomed) reject(err); else this.onerror(err);
        }
      };
      ws.onclose = (ev) => {
        const err = new SignalingError('disconnected', `websocket closed (${ev.code})`);
        if (!welcomed) reject(err);
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
        if (welcomed) this.onclose(err);
      };
    });
  }

  send(frame) {
    this.ws.send(JSON.stringify(frame));
  }

  // Sends a request; resolves with its `data`, rejects with a SignalingError.
  request(method, data = {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.send({ type: 'request', id, method, data });
    });
  }

  settle(frame) {
    const p = this.pending.get(frame.id);
    if (!p) return;
    this.pending.delete(frame.id);
    if (frame.ok) p.resolve(frame.data || {});
    else p.reject(new SignalingError(frame.error.code, frame.error.message));
  }

  on(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, []);
    this.handlers.get(event).push(fn);
  }

  emit(event, data) {
    for (const fn of this.handlers.get(event) || []) fn(data);
  }

  close() {
    if (this.ws) this.ws.close(1000);
  }
}

// ---------------------------------------------------------------- page state

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;

// Exposed for tests and the console.
const jasmin = window.jasmin = {
  role: params.get('role') === 'performer' ? 'performer' : 'viewer',
  state: 'idle',      // idle | connecting | waiting | live | ended | stopped | error
  lastError: null,    // {code, message}
  signaling: null,
  pc: null,           // the performer's pc, or the viewer's first pc
  pcs: [],            // every peer connection of this page
  producers: new Map(), // viewer: producer_id -> {pc, track}
  localStream: null,
  remoteStream: null,
  Signaling,
};

function setStatus(state, text) {
  jasmin.state = state;
  const el = $('status');
  el.dataset.state = state;
  el.textContent = text;
  const busy = !['idle', 'ended', 'stopped', 'error'].includes(state);
  $('go-live').disabled = busy;
  $('watch').disabled = busy;
  $('stop').disabled = !busy;
  $('show-id').disabled = busy;
}

function fail(err) {
  // Wire errors carry their code; browser errors (getUserMedia…) their name.
  const ours = err instanceof SignalingError;
  const code = ours ? err.code : (err.name || 'client_error');
  const message = ours ? err.detail : (err.message || String(err));
  jasmin.lastError = { code, message };
  console.error('jasmin:', code, message);
  teardown();
  setStatus('error', `Error ${code}: ${message}`);
}

function showId() {
  const input = $('show-id');
  if (!input.checkValidity()) throw new SignalingError('bad_request', 'show id: 1-64 of A-Z a-z 0-9 _ . : -');
  return input.value;
}

async function connect() {
  const sig = new Signaling(wsUrl);
  jasmin.signaling = sig;
  sig.onerror = (err) => { jasmin.lastError = { code: err.code, message: err.detail }; };
  sig.onclose = (err) => { if (jasmin.signaling === sig) fail(err); };
  await sig.connect();
  return sig;
}

function newPeerConnection() {
  const pc = new RTCPeerConnection({ iceServers: [] });
  jasmin.pcs.push(pc);
  if (!jasmin.pc) jasmin.pc = pc;
  pc.addEventListener('connectionstatechange', () => {
    if (pc.connectionState === 'failed' && jasmin.pcs.includes(pc)) {
      fail(new SignalingError('ice_failed', 'the media connection failed'));
    }
  });
  return pc;
}

// Resolves once every ICE candidate is in the local description.
function iceGatheringComplete(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => {
      if (pc.iceGatheringState !== 'complete') return;
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    pc.addEventListener('icegatheringstatechange', check);
  });
}

function teardown() {
  const sig = jasmin.signaling;
  jasmin.signaling = null;
  if (sig) sig.close();
  for (const pc of jasmin.pcs) pc.close();
  jasmin.pcs = [];
  jasmin.pc = null;
  jasmin.producers.clear();
  if (jasmin.localStream) jasmin.localStream.getTracks().forEach((t) => t.stop());
  jasmin.localStream = null;
}

// ---------------------------------------------------------------- performer

async function publish(show) {
  setStatus('connecting', 'Starting camera…');
  const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  jasmin.localStream = stream;
  $('local-video').srcObject = stream;

  setStatus('connecting', `Connecting to ${wsUrl}…`);
  const sig = await connect();
  sig.on('show.ended', () => setStatus('ended', 'Show ended'));
  await sig.request('join', { show_id: show, role: 'performer' });

  const pc = newPeerConnection();
  for (const track of stream.getTracks()) {
    pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
  }
  await pc.setLocalDescription(await pc.createOffer());
  await iceGatheringComplete(pc);
  setStatus('connecting', 'Publishing…');
  const res = await sig.request('publish', { sdp: pc.localDescription.sdp });
  await pc.setRemoteDescription({ type: 'answer', sdp: res.sdp });
  const codecs = res.producers.map((p) => `${p.kind} ${p.codec}`).join(', ');
  setStatus('live', `Live on show "${show}" (${codecs})`);
}

// ---------------------------------------------------------------- viewer

// One subscribe = one new peer connection carrying `producerIds` (all if null).
async function subscribe(sig, producerIds) {
  const res = await sig.request('subscribe', producerIds ? { producer_ids: producerIds } : {});
  const pc = newPeerConnection();
  pc.addEventListener('track', (ev) => {
    jasmin.remoteStream.addTrack(ev.track);
    const video = $('remote-video');
    if (!video.srcObject) video.srcObject = jasmin.remoteStream;
    video.play().catch((err) => console.warn('jasmin: play():', err.message));
  });
  await pc.setRemoteDescription({ type: 'offer', sdp: res.sdp });
  // Consumers come in the order of the offer's m-sections, like transceivers.
  pc.getTransceivers().forEach((t, i) => {
    const c = res.consumers[i];
    if (c) jasmin.producers.set(c.producer_id, { pc, track: t.receiver.track });
  });
  await pc.setLocalDescription(await pc.createAnswer());
  await iceGatheringComplete(pc);
  await sig.request('answer', { transport_id: res.transport_id, sdp: pc.localDescription.sdp });
}

function dropProducer(producerId) {
  const entry = jasmin.producers.get(producerId);
  if (!entry) return;
  jasmin.producers.delete(producerId);
  jasmin.remoteStream.removeTrack(entry.track);
  const pcUsed = [...jasmin.producers.values()].some((e) => e.pc === entry.pc);
  if (!pcUsed) {
    entry.pc.close();
    jasmin.pcs = jasmin.pcs.filter((pc) => pc !== entry.pc);
    if (jasmin.pc === entry.pc) jasmin.pc = jasmin.pcs[0] || null;
  }
}

async function watch(show) {
  setStatus('connecting', `Connecting to ${wsUrl}…`);
  jasmin.remoteStream = new MediaStream();
  $('remote-video').srcObject = null;
  const sig = await connect();

  // Events are handled one at a time, after any subscribe in flight, so a
  // producer already carried by an earlier subscription is not asked twice.
  let queue = Promise.resolve();
  const serial = (fn) => { queue = queue.then(fn).catch(fail); };
  const live = () => setStatus('live', `Watching "${show}" (${jasmin.producers.size} tracks)`);

  sig.on('producer.added', ({ producer }) => serial(async () => {
    if (jasmin.signaling !== sig || jasmin.producers.has(producer.producer_id)) return;
    setStatus('connecting', `New ${producer.kind} track, subscribing…`);
    await subscribe(sig, jasmin.producers.size ? [producer.producer_id] : null);
    live();
  }));
  sig.on('producer.removed', ({ producer_id }) => serial(() => {
    dropProducer(producer_id);
    if (jasmin.producers.size) live();
    else setStatus('waiting', `Show "${show}" has nothing published right now`);
  }));
  sig.on('show.ended', () => serial(() => {
    teardown();
    setStatus('ended', `Show "${show}" ended`);
  }));

  const joined = await sig.request('join', { show_id: show, role: 'viewer' });
  if (!joined.producers.length) {
    setStatus('waiting', `Waiting for "${show}" to publish…`);
    return;
  }
  setStatus('connecting', 'Subscribing…');
  serial(async () => {
    if (jasmin.producers.size) return; // a producer.added got there first
    await subscribe(sig, null);
    live();
  });
  await queue;
}

// ---------------------------------------------------------------- wiring

function selectRole(role) {
  jasmin.role = role;
  $(`role-${role}`).checked = true;
  for (const el of document.querySelectorAll('[data-role]')) el.hidden = el.dataset.role !== role;
  params.set('role', role);
  history.replaceState(null, '', `?${params}`);
}

function start(action) {
  let show;
  try { show = showId(); } catch (err) { fail(err); return; }
  params.set('show', show);
  history.replaceState(null, '', `?${params}`);
  jasmin.lastError = null;
  teardown();
  action(show).catch(fail);
}

function stop() {
  teardown();
  setStatus('stopped', 'Stopped');
}

$('ws-url').textContent = wsUrl;
if (params.get('show')) $('show-id').value = params.get('show');
selectRole(jasmin.role);
for (const radio of document.querySelectorAll('input[name=role]')) {
  radio.addEventListener('change', () => {
    if (jasmin.signaling) stop();
    selectRole(radio.value);
  });
}
$('go-live').addEventListener('click', () => start(publish));
$('watch').addEventListener('click', () => start(watch));
$('stop').addEventListener('click', stop);
$('controls').addEventListener('submit', (ev) => ev.preventDefault());
Object.assign(jasmin, { publish, watch, stop });
