// jasmin-sfu demo page: a performer publishes camera + microphone, a viewer
// watches. Speaks signaling v1 (docs/signaling.md) over ws(s)://<host>/ws with
// the browser's own WebRTC. No trickle ICE: SDP is sent once gathering is done.
'use strict';

const PROTOCOL = 'jasmin/1';

// ---------------------------------------------------------------- signaling

class SignalingError extends Error {
  constructor(code, message, wire = {}) {
    super(`${code}: ${message}`);
    this.code = code;
    this.detail = message;
    this.url = typeof wire.url === 'string' ? wire.url : null; // `moved`: the node holding the show
  }
}

class Signaling {
  constructor(url) {
    this.url = url;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map(); // request id -> {resolve, reject}
    this.handlers = new Map(); // event name -> [fn]
    this.seen = [];            // the last 200 events received {event, data}, for tests and the console
    this.onerror = () => {};   // an `error` frame matching no request
    this.onclose = () => {};
    this.onmoved = () => {};   // after following `moved`, with the new node's welcome
    this.movedTo = null;
  }

  // Opens the websocket and says hello; resolves with the welcome frame.
  connect(client = 'demo-page') {
    this.client = client;
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

  // Sends a request; resolves with its `data`, rejects with a SignalingError. A `join`
  // answered `moved` (docs/signaling.md, "Several nodes") is followed once: the websocket
  // moves to the node holding the show (a new hello there) and the same join is sent again.
  async request(method, data = {}) {
    try {
      return await this.send1(method, data);
    } catch (err) {
      if (method !== 'join' || !(err instanceof SignalingError) || err.code !== 'moved'
          || !/^wss?:\/\//.test(err.url || '')) throw err;
      await this.moveTo(err.url);
      return this.send1(method, data);
    }
  }

  async moveTo(url) {
    const old = this.ws;
    old.onclose = null;
    old.onmessage = null;
    old.close();
    this.url = url;
    this.movedTo = url;
    this.onmoved(await this.connect(this.client));
  }

  send1(method, data) {
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
    else p.reject(new SignalingError(frame.error.code, frame.error.message, frame.error));
  }

  on(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, []);
    this.handlers.get(event).push(fn);
  }

  emit(event, data) {
    this.seen.push({ event, data });
    if (this.seen.length > 200) this.seen.shift();
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
  liveText: '',       // the status line while live, before the show state
  signaling: null,
  sessionId: null,    // the welcome's session_id (the server's audience key for this page)
  pc: null,           // the performer's pc, or the viewer's first pc
  pcs: [],            // every peer connection of this page
  pcsCreated: 0,      // how many this page ever made (a renegotiation would add one)
  producers: new Map(), // viewer: producer_id -> {pc, track, transportId}
  localStream: null,
  remoteStream: null,
  // Shows (docs/signaling.md, "Shows"):
  token: params.get('token'), // a session token (docs/accounts.md); null: none yet
  // RTCPeerConnection iceServers: the TURN servers and credentials of the last join answer
  // (docs/deploy.md); `?relay=1` allows relay candidates only, to check a TURN server.
  iceServers: [],
  iceTransportPolicy: params.get('relay') === '1' ? 'relay' : 'all',
  memberId: null,     // viewer: the member id joined with; null for a guest
  showState: null,    // offline | free | private | member_chat, as the server shows it to this page
  privateMember: null, // performer: the member of the running private; member: its own id while its private runs
  requests: [],       // performer: member ids with a pending private request
  requested: false,   // member: its own request is pending
  peekUntil: null,    // member: end of its running sneak peek (UNIX seconds)
  autoAccept: false,  // performer: show.settings auto_accept
  lastAccept: null,   // performer: the answer to the last private.accept
  cam2cam: null,      // member: {pc, stream, producers} while it sends its camera
  memberCam: { producers: new Map(), pending: new Set(), stream: new MediaStream() }, // performer: the member's Cam2Cam
  demoLogin: params.get('demo'), // `?demo=performer|member`: account.js logs in as that demo account
  trustClientIds: false, // the node's accounts.trust_client_ids (GET /demo/config): shows "Member id"
  simulcast: false,   // the node takes simulcast (GET /demo/config): the performer sends SIMULCAST layers
  readout: null,      // viewer: {width, height, fps, kbps, layer} of the show's video, once a second
  layers: new Map(),  // viewer: producer_id -> the layer the node reported it forwards ({spatial, temporal, rid})
  Signaling,
};

// The performer's camera: 1280x720 when the camera has it. With simulcast the
// video goes out as three layers (RIDs q, h, f: a quarter, half and full size).
const CAMERA = { video: { width: { ideal: 1280 }, height: { ideal: 720 } }, audio: true };
const SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4 },
  { rid: 'h', scaleResolutionDownBy: 2 },
  { rid: 'f', scaleResolutionDownBy: 1 },
];

// Who this page is in the show: performer, member or guest.
const who = () => (jasmin.role === 'performer' ? 'performer' : jasmin.memberId ? 'member' : 'guest');
const ownPrivate = () => jasmin.privateMember !== null
  && (who() === 'performer' || jasmin.privateMember === jasmin.memberId);

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
  $('member-id').disabled = busy;
}

// The live status line: what the page does, then the show state as this page may know it.
function goLive(text) {
  jasmin.liveText = text;
  setStatus('live', `${text} · ${showLabel()}`);
}

function refreshStatus() {
  if (jasmin.state === 'live') goLive(jasmin.liveText);
}

function showLabel() {
  const s = jasmin.showState;
  if (s === 'free') return 'free chat';
  if (s === 'private' && who() === 'performer') return `private with ${jasmin.privateMember || 'a member'}`;
  if (s === 'private' && ownPrivate()) return 'private: your private show';
  if (s === 'private') return 'private: the performer is in a private show';
  if (s === 'member_chat') return jasmin.peekUntil ? 'member chat: sneak peek' : 'member chat';
  return s || '';
}

function notice(text) {
  const el = $('notice');
  el.hidden = !text;
  el.textContent = text || '';
}

// A failed show action (request, accept, Cam2Cam…) is reported; the page stays up.
function noteError(err) {
  const ours = err instanceof SignalingError;
  const code = ours ? err.code : (err.name || 'client_error');
  const message = ours ? err.detail : (err.message || String(err));
  jasmin.lastError = { code, message };
  console.error('jasmin:', code, message);
  notice(`Error ${code}: ${message}${hint(code)}`);
}

// What the person in front of the page can do about an error (the code stays first).
function hint(code) {
  const performer = jasmin.role === 'performer';
  const demo = $('demo-logins') && !$('demo-logins').hidden;
  if (code === 'unauthorized' && performer) {
    return demo ? ' (log in as a performer first: "Log in as demo performer")'
      : ' (log in with a performer account first; an admin creates them: POST /api/v1/performers)';
  }
  if (code === 'unauthorized') return ' (log in, or confirm 18+ to watch as a guest)';
  if (code === 'forbidden' && performer) {
    return ' (going live needs a performer account, on its own show: the Show field must be its username)';
  }
  if (code === 'insufficient_credits' || code === 'insufficient_funds') {
    return demo ? ' (buy credits, or "Demo top-up")' : ' (buy credits in the wallet above)';
  }
  if (code === 'NotAllowedError' || code === 'NotFoundError') return ' (allow the camera and microphone for this page)';
  if (code === 'adult_confirmation_required') return ' (tick "I am 18 or older" and sign up, or watch as a guest)';
  if (code === 'private_busy') return ' (the performer is in another private: try again later)';
  if (code === 'disconnected') return ' (the node went away: reload the page)';
  if (code === 'unknown_show') return ' (this performer is not live right now: try again later, or search for another show)';
  if (code === 'banned') return ' (you are banned from this room: watch another show)';
  if (code === 'overloaded') return ' (this node is full: try again in a minute)';
  if (code === 'already_requested') return ' (your request is pending: wait for the performer\'s answer)';
  if (code === 'invalid_state') return ' (the show is not in a state for this: wait for the status line to change)';
  if (code === 'rate_limited') return ' (too fast: wait a moment, then try again)';
  if (code === 'ice_failed') return ' (check your network, then press Watch or Go live again)';
  if (code === 'bad_request' && !performer) return ' (check the Show field: 1-64 of A-Z a-z 0-9 _ . : -)';
  return '';
}

function fail(err) {
  // Wire errors carry their code; browser errors (getUserMedia…) their name.
  const ours = err instanceof SignalingError;
  const code = ours ? err.code : (err.name || 'client_error');
  const message = ours ? err.detail : (err.message || String(err));
  jasmin.lastError = { code, message };
  console.error('jasmin:', code, message);
  teardown();
  setStatus('error', `Error ${code}: ${message}${hint(code)}`);
}

function checkedId(input, what) {
  if (!input.checkValidity()) throw new SignalingError('bad_request', `${what}: 1-64 of A-Z a-z 0-9 _ . : -`);
  return input.value;
}

// Who this page is comes from a session token (docs/accounts.md): `?token=` as
// given by a login. A node that trusts no client ids answers a token-less join
// `unauthorized`; a viewer may then confirm being 18+ and watch as a guest.
async function joinShow(sig, join) {
  const joined = await joinWithToken(sig, join);
  jasmin.iceServers = joined.ice_servers || [];
  return joined;
}

async function joinWithToken(sig, join) {
  if (jasmin.token) return sig.request('join', { ...join, token: jasmin.token });
  try {
    return await sig.request('join', join);
  } catch (err) {
    if (!(err instanceof SignalingError) || err.code !== 'unauthorized' || join.role !== 'viewer'
        || !window.confirm('This site shows adult content. Are you 18 or older?')) throw err;
    const res = await fetch('/api/v1/guest-sessions', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ adult_confirmed: true }),
    });
    if (!res.ok) throw err;
    jasmin.token = (await res.json()).token;
    return sig.request('join', { ...join, token: jasmin.token });
  }
}

async function connect() {
  const sig = new Signaling(wsUrl);
  jasmin.signaling = sig;
  sig.onerror = (err) => { jasmin.lastError = { code: err.code, message: err.detail }; };
  sig.onclose = (err) => { if (jasmin.signaling === sig) fail(err); };
  sig.onmoved = (welcome) => { jasmin.sessionId = welcome.session_id; };
  const welcome = await sig.connect();
  jasmin.sessionId = welcome.session_id;
  return sig;
}

// A failed main pc (the performer's, the viewer's show) fails the page; an
// auxiliary one (Cam2Cam either way) passes `onFailed` and is just dropped.
function newPeerConnection(onFailed = null) {
  // Never a STUN server of our own choosing: only what the node handed out.
  const pc = new RTCPeerConnection({ iceServers: jasmin.iceServers, iceTransportPolicy: jasmin.iceTransportPolicy });
  jasmin.pcs.push(pc);
  jasmin.pcsCreated += 1;
  if (!jasmin.pc && !onFailed) jasmin.pc = pc;
  pc.addEventListener('connectionstatechange', () => {
    if (pc.connectionState !== 'failed' || !jasmin.pcs.includes(pc)) return;
    if (onFailed) onFailed(pc);
    else fail(new SignalingError('ice_failed', 'the media connection failed'));
  });
  return pc;
}

function forgetPc(pc) {
  pc.close();
  jasmin.pcs = jasmin.pcs.filter((p) => p !== pc);
  if (jasmin.pc === pc) jasmin.pc = null;
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
  stopCam2Cam();
  for (const pc of jasmin.pcs) pc.close();
  jasmin.pcs = [];
  jasmin.pc = null;
  jasmin.producers.clear();
  jasmin.layers.clear();
  stopReadout();
  if (jasmin.localStream) jasmin.localStream.getTracks().forEach((t) => t.stop());
  jasmin.localStream = null;
  const cam = jasmin.memberCam;
  cam.producers.clear();
  cam.pending.clear();
  cam.stream.getTracks().forEach((t) => cam.stream.removeTrack(t));
  Object.assign(jasmin, {
    sessionId: null, memberId: null, iceServers: [], showState: null, privateMember: null, requests: [], requested: false, peekUntil: null,
  });
  render();
}

// ---------------------------------------------------------------- show UI

// Makes every show control agree with the state above; called after each change.
function render() {
  const me = who();
  const s = jasmin.showState;
  const inShow = jasmin.signaling !== null && s !== null && s !== 'offline';
  $('show-actions').hidden = !inShow || me === 'guest';
  for (const el of $('show-actions').querySelectorAll('[data-for]')) {
    el.hidden = !el.dataset.for.split(' ').includes(me);
  }
  $('request-private').disabled = !(s === 'free' || s === 'member_chat') || jasmin.requested;
  $('request-private').textContent = jasmin.requested ? 'Private requested…' : 'Request private';
  $('sneak-peek').disabled = s !== 'member_chat' || jasmin.peekUntil !== null;
  $('cam2cam').disabled = me !== 'member' || !ownPrivate() || jasmin.cam2cam !== null;
  $('end-private').disabled = s !== 'private' || !ownPrivate();
  $('back-to-free').disabled = s !== 'member_chat';
  $('auto-accept').checked = jasmin.autoAccept;

  const list = $('private-requests');
  const key = jasmin.requests.join(' ');
  if (list.dataset.key !== key) { // rebuilt only when it changes: a click never meets a stale button
    list.dataset.key = key;
    list.replaceChildren(...jasmin.requests.map(requestItem));
  }
  $('no-requests').hidden = jasmin.requests.length > 0;
  $('member-cam-box').hidden = jasmin.memberCam.producers.size === 0;
  $('own-cam-box').hidden = jasmin.cam2cam === null;
  $('status').dataset.show = s || '';
  refreshStatus();
  playback();
}

function requestItem(memberId) {
  const li = document.createElement('li');
  li.append(`${memberId} `);
  for (const [cls, label] of [['accept-private', 'Accept'], ['decline-private', 'Decline']]) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = cls;
    b.dataset.member = memberId;
    b.textContent = label;
    li.append(b, ' ');
  }
  return li;
}

// A viewer's video plays while the server sends it media: free chat, its own
// private, its sneak peek. Otherwise it pauses; the peer connection stays, and
// the server resumes it on a fresh keyframe without renegotiating.
function playback() {
  const video = $('remote-video');
  const on = jasmin.showState === 'free' || ownPrivate() || jasmin.peekUntil !== null;
  const held = jasmin.role === 'viewer' && jasmin.signaling !== null && jasmin.showState !== null && !on;
  $('remote-box').classList.toggle('held', held);
  $('held-note').hidden = !held;
  $('held-note').textContent = jasmin.showState === 'member_chat'
    ? 'The performer is in member chat: take a sneak peek, or request a private.'
    : 'The performer is in a private show. The video resumes when the show is free again.';
  if (jasmin.role !== 'viewer' || !video.srcObject) return;
  if (on && video.paused) video.play().catch((err) => console.warn('jasmin: play():', err.message));
  else if (!on && !video.paused) video.pause();
}

const without = (list, item) => list.filter((x) => x !== item);

// Show events, for performers and viewers alike (the server sends each only to whom it concerns).
function listenToShow(sig) {
  const on = (name, fn) => sig.on(name, (data) => {
    if (jasmin.signaling !== sig) return;
    fn(data);
    render();
  });
  const mine = (d) => who() === 'performer' || d.member_id === jasmin.memberId;
  on('show.state', (d) => {
    jasmin.showState = d.state;
    if (d.state !== 'private') jasmin.privateMember = null;
    if (d.state !== 'member_chat') jasmin.peekUntil = null;
  });
  on('private.requested', (d) => {
    if (who() === 'performer') {
      if (!jasmin.requests.includes(d.member_id)) jasmin.requests = [...jasmin.requests, d.member_id];
    } else if (mine(d)) jasmin.requested = true;
  });
  on('private.started', (d) => {
    if (!mine(d)) return;
    jasmin.privateMember = d.member_id;
    jasmin.requests = without(jasmin.requests, d.member_id);
    jasmin.requested = false;
    jasmin.peekUntil = null;
    notice(who() === 'performer' ? `Private with ${d.member_id} started` : 'Your private started');
  });
  on('private.declined', (d) => {
    jasmin.requests = without(jasmin.requests, d.member_id);
    if (who() !== 'performer' && mine(d)) {
      jasmin.requested = false;
      notice(`Your private request was declined (${d.reason})`);
    }
  });
  on('private.ended', (d) => {
    if (!mine(d)) return;
    jasmin.privateMember = null;
    if (who() === 'member') stopCam2Cam();
    notice(`Private ended (${d.reason})`);
  });
  on('cam2cam.started', (d) => { if (who() === 'performer') notice(`${d.member_id} sends you their camera`); });
  on('cam2cam.ended', () => { if (who() === 'member') stopCam2Cam(); });
  on('sneak_peek.started', (d) => { if (who() === 'member' && mine(d)) jasmin.peekUntil = d.until; });
  on('sneak_peek.ended', (d) => { if (who() === 'member' && mine(d)) jasmin.peekUntil = null; });
}

// Runs a show action from a button; an error is shown and the page stays up.
function action(fn) {
  return () => {
    const sig = jasmin.signaling;
    if (!sig) return;
    notice('');
    Promise.resolve().then(() => fn(sig)).catch(noteError).finally(render);
  };
}

// ---------------------------------------------------------------- performer

async function publish(show) {
  // Said before the camera starts: a token-less performer join can only be refused
  // (unless the node trusts client ids, which /demo/config tells account.js).
  if (window.jasminAccount && window.jasminAccount.ready) await window.jasminAccount.ready;
  if (!jasmin.token && !jasmin.trustClientIds) throw new SignalingError('unauthorized', 'going live needs a performer account');
  setStatus('connecting', 'Starting camera…');
  const stream = await navigator.mediaDevices.getUserMedia(CAMERA);
  jasmin.localStream = stream;
  $('local-video').srcObject = stream;

  setStatus('connecting', `Connecting to ${wsUrl}…`);
  const sig = await connect();
  sig.on('show.ended', () => setStatus('ended', 'Show ended'));
  listenToShow(sig);
  listenToMemberCam(sig);
  const joined = await joinShow(sig, { show_id: show, role: 'performer' });
  jasmin.showState = joined.state;

  const pc = newPeerConnection();
  for (const track of stream.getTracks()) {
    const init = { direction: 'sendonly', streams: [stream] };
    if (track.kind === 'video' && jasmin.simulcast) init.sendEncodings = SIMULCAST.map((e) => ({ ...e }));
    pc.addTransceiver(track, init);
  }
  await pc.setLocalDescription(await pc.createOffer());
  await iceGatheringComplete(pc);
  setStatus('connecting', 'Publishing…');
  const res = await sig.request('publish', { sdp: pc.localDescription.sdp });
  await pc.setRemoteDescription({ type: 'answer', sdp: res.sdp });
  const codecs = res.producers.map((p) => `${p.kind} ${p.codec}`).join(', ');
  goLive(`Live on show "${show}" (${codecs})`);
  render();
}

// The member's Cam2Cam: the performer hears of its producers (`producer.added`
// with app_data.cam2cam; nobody else does) and subscribes on a peer connection
// of its own, played in #member-cam. `producer.removed` drops them.
function listenToMemberCam(sig) {
  const cam = jasmin.memberCam;
  let queue = Promise.resolve();
  const serial = (fn) => { queue = queue.then(fn).catch(noteError).finally(render); };
  sig.on('producer.added', ({ producer }) => {
    if (jasmin.signaling !== sig || !(producer.app_data && producer.app_data.cam2cam)) return;
    cam.pending.add(producer.producer_id);
    serial(async () => {
      // Let the Cam2Cam's other producers, announced together, join this subscribe.
      await new Promise((resolve) => setTimeout(resolve, 0));
      const ids = [...cam.pending].filter((id) => !cam.producers.has(id));
      cam.pending.clear();
      if (ids.length && jasmin.signaling === sig) await subscribe(sig, ids, memberCamSink());
    });
  });
  sig.on('producer.removed', ({ producer_id: id }) => serial(() => {
    cam.pending.delete(id);
    dropProducer(memberCamSink(), id);
  }));
}

function memberCamSink() {
  const sink = {
    producers: jasmin.memberCam.producers,
    stream: jasmin.memberCam.stream,
    video: $('member-cam'),
    play: () => sink.video.play().catch((err) => console.warn('jasmin: play():', err.message)),
    onFailed: (pc) => {
      for (const [id, e] of [...sink.producers]) if (e.pc === pc) dropProducer(sink, id);
      render();
    },
  };
  return sink;
}

// ---------------------------------------------------------------- viewer

function viewerSink() {
  return { producers: jasmin.producers, stream: jasmin.remoteStream, video: $('remote-video'), play: playback, onFailed: null };
}

// One subscribe = one new peer connection carrying `producerIds` (all if null),
// its tracks added to `sink.stream`, shown in `sink.video`.
async function subscribe(sig, producerIds, sink) {
  const res = await sig.request('subscribe', producerIds ? { producer_ids: producerIds } : {});
  const pc = newPeerConnection(sink.onFailed);
  pc.addEventListener('track', (ev) => {
    sink.stream.addTrack(ev.track);
    if (!sink.video.srcObject) sink.video.srcObject = sink.stream;
    sink.play();
  });
  await pc.setRemoteDescription({ type: 'offer', sdp: res.sdp });
  // Consumers come in the order of the offer's m-sections, like transceivers.
  pc.getTransceivers().forEach((t, i) => {
    const c = res.consumers[i];
    if (c) sink.producers.set(c.producer_id, { pc, track: t.receiver.track, transportId: res.transport_id });
  });
  await pc.setLocalDescription(await pc.createAnswer());
  await iceGatheringComplete(pc);
  await sig.request('answer', { transport_id: res.transport_id, sdp: pc.localDescription.sdp });
}

function dropProducer(sink, producerId) {
  const entry = sink.producers.get(producerId);
  if (!entry) return;
  sink.producers.delete(producerId);
  sink.stream.removeTrack(entry.track);
  if ([...sink.producers.values()].some((e) => e.pc === entry.pc)) return;
  forgetPc(entry.pc);
  // The server keeps a transport until it is unsubscribed (or the page leaves).
  const sig = jasmin.signaling;
  if (sig) sig.request('unsubscribe', { transport_id: entry.transportId }).catch(() => {});
}

async function watch(show, memberId) {
  setStatus('connecting', `Connecting to ${wsUrl}…`);
  jasmin.remoteStream = new MediaStream();
  $('remote-video').srcObject = null;
  const sig = await connect();
  listenToShow(sig);

  // Events are handled one at a time, after any subscribe in flight, so a
  // producer already carried by an earlier subscription is not asked twice.
  let queue = Promise.resolve();
  const serial = (fn) => { queue = queue.then(fn).catch(fail); };
  const live = () => {
    goLive(`Watching "${show}"${memberId ? ` as member ${memberId}` : ''} (${jasmin.producers.size} tracks)`);
  };

  sig.on('producer.added', ({ producer }) => serial(async () => {
    if (jasmin.signaling !== sig || jasmin.producers.has(producer.producer_id)) return;
    setStatus('connecting', `New ${producer.kind} track, subscribing…`);
    await subscribe(sig, jasmin.producers.size ? [producer.producer_id] : null, viewerSink());
    live();
  }));
  sig.on('producer.removed', ({ producer_id }) => serial(() => {
    dropProducer(viewerSink(), producer_id);
    if (jasmin.producers.size) live();
    else setStatus('waiting', `Show "${show}" has nothing published right now`);
  }));
  sig.on('show.ended', () => serial(() => {
    teardown();
    setStatus('ended', `Show "${show}" ended`);
  }));
  // The layer the node forwards this viewer, when it says (simulcast, issue 12).
  sig.on('consumer.layer', (d) => {
    if (jasmin.signaling === sig && d && d.producer_id) jasmin.layers.set(d.producer_id, d);
  });
  startReadout(sig);

  const join = { show_id: show, role: 'viewer' };
  if (memberId && !jasmin.token) join.member_id = memberId;
  const joined = await joinShow(sig, join);
  jasmin.memberId = joined.member_id || null; // the server says whether this page is a member
  jasmin.showState = joined.state;
  render();
  if (!joined.producers.length) {
    setStatus('waiting', `Waiting for "${show}" to publish…`);
    return;
  }
  setStatus('connecting', 'Subscribing…');
  serial(async () => {
    if (jasmin.producers.size) return; // a producer.added got there first
    await subscribe(sig, null, viewerSink());
    live();
  });
  await queue;
}

// Cam2Cam: the member of a running private sends its camera and microphone on
// the same websocket (`publish`); only the performers receive it.
async function startCam2Cam(sig) {
  const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  if (jasmin.signaling !== sig || !ownPrivate() || jasmin.cam2cam) {
    stream.getTracks().forEach((t) => t.stop());
    return;
  }
  const pc = newPeerConnection(() => { stopCam2Cam(); render(); });
  const cam = jasmin.cam2cam = { pc, stream, producers: [] };
  $('own-cam').srcObject = stream;
  render();
  try {
    for (const track of stream.getTracks()) {
      pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    }
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc);
    const res = await sig.request('publish', { sdp: pc.localDescription.sdp });
    if (jasmin.cam2cam !== cam) return; // the private ended meanwhile
    await pc.setRemoteDescription({ type: 'answer', sdp: res.sdp });
    cam.producers = res.producers;
  } catch (err) {
    if (jasmin.cam2cam !== cam) return;
    stopCam2Cam();
    throw err;
  }
}

function stopCam2Cam() {
  const cam = jasmin.cam2cam;
  if (!cam) return;
  jasmin.cam2cam = null;
  forgetPc(cam.pc);
  cam.stream.getTracks().forEach((t) => t.stop());
  $('own-cam').srcObject = null;
}

// ---------------------------------------------------------------- stats (tests, console)

// The viewer's readout under the video: the show's received resolution, frame rate
// and bitrate (getStats, once a second), and the layer when the node reports one.
let readoutTimer = null;

function startReadout(sig) {
  stopReadout();
  let last = null; // {bytes, at} of the previous sample
  const tick = async () => {
    if (jasmin.signaling !== sig) return;
    const pcs = pcsOf(jasmin.producers);
    let video = null, bytes = 0;
    for (const pc of pcs) {
      for (const s of (await pc.getStats()).values()) {
        if (s.type !== 'inbound-rtp' || s.kind !== 'video') continue;
        bytes += s.bytesReceived || 0;
        if (!video || (s.frameWidth || 0) > (video.frameWidth || 0)) video = s;
      }
    }
    if (jasmin.signaling !== sig) return;
    const now = performance.now();
    const kbps = last && now > last.at && bytes >= last.bytes ? Math.round((bytes - last.bytes) * 8 / (now - last.at)) : null;
    last = { bytes, at: now };
    const layer = [...jasmin.layers.values()][0] || null;
    jasmin.readout = video ? {
      width: video.frameWidth || 0, height: video.frameHeight || 0,
      fps: Math.round(video.framesPerSecond || 0), kbps, layer,
    } : null;
    renderReadout();
  };
  readoutTimer = setInterval(() => { tick().catch((err) => console.warn('jasmin: readout:', err.message)); }, 1000);
}

function stopReadout() {
  if (readoutTimer !== null) clearInterval(readoutTimer);
  readoutTimer = null;
  jasmin.readout = null;
  renderReadout();
}

function renderReadout() {
  const r = jasmin.readout;
  const el = $('readout');
  el.hidden = r === null;
  if (!r) { el.textContent = ''; return; }
  const parts = [r.width ? `${r.width}x${r.height}` : 'no video', `${r.fps} fps`, r.kbps === null ? '… kbit/s' : `${r.kbps} kbit/s`];
  if (r.layer && r.layer.spatial == null) parts.push('video paused (link too weak)');
  else if (r.layer) parts.push(`layer ${r.layer.rid || r.layer.spatial}${r.layer.temporal != null ? `/t${r.layer.temporal}` : ''}`);
  el.textContent = parts.join(' · ');
}

// Inbound RTP of some peer connections, summed per kind.
async function inboundStats(pcs) {
  const out = { pcs: pcs.length, video: { packets: 0, bytes: 0, framesDecoded: 0 }, audio: { packets: 0, bytes: 0 } };
  for (const pc of pcs) {
    for (const s of (await pc.getStats()).values()) {
      if (s.type !== 'inbound-rtp' || !out[s.kind]) continue;
      const acc = out[s.kind];
      acc.packets += s.packetsReceived || 0;
      acc.bytes += s.bytesReceived || 0;
      if (s.kind === 'video') acc.framesDecoded += s.framesDecoded || 0;
    }
  }
  return out;
}

// The selected ICE candidate pair of a peer connection: which local candidate (host, srflx,
// relay, and for a relay the transport to the TURN server: udp, tcp, tls) carries the media.
async function selectedPair(pc) {
  const stats = await pc.getStats();
  for (const s of stats.values()) {
    if (s.type !== 'transport' || !s.selectedCandidatePairId) continue;
    const pair = stats.get(s.selectedCandidatePairId);
    const local = pair && stats.get(pair.localCandidateId);
    const remote = pair && stats.get(pair.remoteCandidateId);
    if (!local || !remote) continue;
    return {
      state: pair.state, localType: local.candidateType, protocol: local.protocol,
      relayProtocol: local.relayProtocol || null, url: local.url || null,
      remoteType: remote.candidateType, remoteProtocol: remote.protocol,
    };
  }
  return null;
}

const pcsOf = (producers) => [...new Set([...producers.values()].map((e) => e.pc))];

// ---------------------------------------------------------------- wiring

function selectRole(role) {
  jasmin.role = role;
  $(`role-${role}`).checked = true;
  for (const el of document.querySelectorAll('[data-role]')) {
    el.hidden = el.dataset.role !== role || ('trust' in el.dataset && !jasmin.trustClientIds);
  }
  params.set('role', role);
  params.delete('demo'); // a `?demo=` login is done once, not again on reload
  history.replaceState(null, '', `?${params}`);
  render();
}

function start(action) {
  let show, member = '';
  try {
    show = checkedId($('show-id'), 'show id');
    if (jasmin.role === 'viewer' && $('member-id').value) member = checkedId($('member-id'), 'member id');
  } catch (err) { fail(err); return; }
  params.set('show', show);
  if (member) params.set('member', member); else params.delete('member');
  history.replaceState(null, '', `?${params}`);
  jasmin.lastError = null;
  notice('');
  teardown();
  action(show, member).catch(fail);
}

function stop() {
  teardown();
  setStatus('stopped', 'Stopped');
}

$('ws-url').textContent = wsUrl;
if (params.get('show')) $('show-id').value = params.get('show');
if (params.get('member')) $('member-id').value = params.get('member');
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

// Show actions. Members:
$('request-private').addEventListener('click', action(async (sig) => {
  jasmin.requested = true; // until private.started or private.declined
  render();
  try {
    const res = await sig.request('private.request');
    if (res.private_member) { // accepted automatically
      jasmin.privateMember = jasmin.memberId;
      jasmin.requested = false;
    }
  } catch (err) {
    jasmin.requested = false;
    throw err;
  }
}));
$('sneak-peek').addEventListener('click', action(async (sig) => {
  const res = await sig.request('sneak_peek');
  if (jasmin.showState === 'member_chat') jasmin.peekUntil = res.until;
}));
$('cam2cam').addEventListener('click', action(startCam2Cam));
// Members and performers:
$('end-private').addEventListener('click', action((sig) => sig.request('private.end')));
// Performers:
$('back-to-free').addEventListener('click', action((sig) => sig.request('show.free')));
$('auto-accept').addEventListener('change', action(async (sig) => {
  const wanted = $('auto-accept').checked;
  try {
    jasmin.autoAccept = (await sig.request('show.settings', { auto_accept: wanted })).auto_accept;
  } catch (err) {
    $('auto-accept').checked = jasmin.autoAccept;
    throw err;
  }
}));
$('private-requests').addEventListener('click', (ev) => {
  const button = ev.target.closest('button[data-member]');
  if (!button) return;
  const memberId = button.dataset.member;
  const accept = button.classList.contains('accept-private');
  action(async (sig) => {
    button.disabled = true;
    try {
      if (accept) jasmin.lastAccept = await sig.request('private.accept', { member_id: memberId });
      else await sig.request('private.decline', { member_id: memberId });
    } finally {
      // Answered or refused (e.g. the member withdrew, which has no event): no longer pending.
      jasmin.requests = without(jasmin.requests, memberId);
    }
  })();
});

Object.assign(jasmin, {
  publish, watch, stop, selectRole,
  // Inbound stats of the show's media (viewer) and of the member's Cam2Cam (performer).
  showStats: () => inboundStats(pcsOf(jasmin.producers)),
  memberCamStats: () => inboundStats(pcsOf(jasmin.memberCam.producers)),
  // The candidate pair of each of the show's peer connections (viewer).
  showPairs: () => Promise.all(pcsOf(jasmin.producers).map(selectedPair)),
});
