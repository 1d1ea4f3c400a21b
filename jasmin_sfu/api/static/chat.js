// Free chat panel (docs/chat.md): the messages of the joined show's room, a send box, tips
// and King of the Room. It rides on app.js's Signaling: a successful `join` answer carries
// `chat` (who you are, the last messages, slow mode, the King), and the room's events
// arrive on the same websocket. Text is always set with textContent, never as HTML.
'use strict';

(() => {
  const S = window.jasmin && window.jasmin.Signaling;
  const panel = document.getElementById('chat');
  if (!S || !panel) return;
  const $ = (id) => document.getElementById(id);

  // Exposed for tests and the console.
  const chat = window.jasminChat = {
    sig: null, room: null, you: null, messages: [], king: null, slowS: 0, lastError: null, removed: null,
  };
  const wired = new WeakSet();

  const original = S.prototype.request;
  S.prototype.request = function request(method, data = {}) {
    const p = original.call(this, method, data);
    if (method === 'join') p.then((joined) => { if (joined && joined.chat) enter(this, joined.chat); }, () => {});
    return p;
  };

  function enter(sig, c) {
    Object.assign(chat, { sig, room: c.room, you: c.you, messages: [], king: c.king, slowS: c.slow_s, removed: null });
    if (!wired.has(sig)) {
      wired.add(sig);
      sig.on('chat.message', (d) => { if (chat.sig === sig) add(d.message); });
      sig.on('chat.deleted', (d) => {
        chat.messages = chat.messages.filter((m) => m.id !== d.message_id);
        renderLog();
      });
      sig.on('chat.cleared', () => { chat.messages = []; renderLog(); });
      sig.on('chat.king', (d) => { chat.king = d.king; renderKing(); });
      sig.on('chat.tip', (d) => note(`${d.tip.from.username} tipped ${d.tip.credits} credits`));
      sig.on('chat.moderation', (d) => { if (d.action === 'slow') { chat.slowS = d.slow_s; renderKing(); } });
      sig.on('chat.removed', (d) => { chat.removed = d; note(`You were removed from the room (${d.action}).`); });
    }
    panel.hidden = false;
    $('chat-tip').hidden = c.you.kind !== 'member';
    c.history.forEach(add);
    renderLog();
    renderKing();
  }

  function add(m) {
    if (chat.messages.some((x) => x.id === m.id)) return;
    chat.messages.push(m);
    chat.messages.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    if (chat.messages.length > 200) chat.messages.shift();
    renderLog();
  }

  function renderLog() {
    const ul = $('chat-log');
    ul.replaceChildren(...chat.messages.map((m) => {
      const li = document.createElement('li');
      li.dataset.id = m.id;
      li.dataset.kind = m.author.kind;
      const who = document.createElement('strong');
      who.textContent = `${m.author.username}: `;
      if (m.author.color) { who.style.color = m.author.color; li.style.color = m.author.color; }
      const text = document.createElement('span');
      text.className = 'chat-text';
      text.textContent = [m.text, ...m.emoticons].filter(Boolean).join(' ');
      li.append(who, text);
      if (m.private) li.classList.add('chat-private');
      if (moderator() && m.author.id !== chat.you.id && m.author.kind !== 'performer') li.append(' ', ...modButtons(m));
      return li;
    }));
    ul.scrollTop = ul.scrollHeight;
  }

  // -- moderation: the show's performers and support, on each line of someone else (docs/chat.md) --

  const moderator = () => Boolean(chat.you && (chat.you.kind === 'performer' || chat.you.kind === 'admin'));
  const MOD_ACTIONS = [
    ['delete', 'Delete', (m) => ['chat.delete', { message_id: m.id }], () => 'Message deleted.'],
    ['mute', 'Mute 5 min', (m) => ['chat.mute', { user: m.author.id, seconds: 300 }],
      (m) => `${m.author.username} is muted for 5 minutes: they read but cannot write.`],
    ['kick', 'Kick', (m) => ['chat.kick', { user: m.author.id }],
      (m) => `${m.author.username} was put out of the show; they may come back.`],
    ['ban', 'Ban 1 day', (m) => ['chat.ban', { user: m.author.id, seconds: 86400 }],
      (m) => `${m.author.username} is banned from your room for a day.`],
  ];

  function modButtons(m) {
    return MOD_ACTIONS.map(([action, label]) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'chat-mod';
      b.dataset.action = action;
      b.dataset.message = m.id;
      b.textContent = label;
      return b;
    });
  }

  async function moderate(ev) {
    const b = ev.target.closest('button.chat-mod');
    if (!b) return;
    const m = chat.messages.find((x) => x.id === b.dataset.message);
    const entry = MOD_ACTIONS.find(([action]) => action === b.dataset.action);
    if (!m || !entry) return;
    const [method, data] = entry[2](m);
    b.disabled = true;
    const out = await call(method, data);
    b.disabled = false;
    if (out === null) return;
    if (method === 'chat.delete') {
      chat.messages = chat.messages.filter((x) => x.id !== m.id);
      renderLog();
    }
    note(entry[3](m));
  }

  function renderKing() {
    const k = chat.king;
    $('chat-king').textContent = (k ? `King of the Room: ${k.username} (${k.credits} credits)` : 'No King of the Room yet')
      + (chat.slowS ? ` · slow mode ${chat.slowS} s` : '');
  }

  function note(text) {
    $('chat-status').textContent = text;
  }

  async function call(method, data) {
    if (!chat.sig) { note('Join a show first.'); return null; }
    try {
      chat.lastError = null;
      return await chat.sig.request(method, data);
    } catch (err) {
      chat.lastError = { code: err.code, message: err.detail || err.message };
      note(`${err.code}: ${err.detail || err.message}${hint(err.code)}`);
      return null;
    }
  }

  // What to do about a refused chat action (the code and the server's message stay first).
  function hint(code) {
    const hints = {
      muted: 'you are muted in this room: wait until the mute ends',
      banned: 'you are banned from this room: watch another show',
      rate_limited: 'too fast: wait a moment, then send again',
      insufficient_credits: 'buy credits in the wallet above',
      forbidden: 'tips are for members, emoticons and colours for TopMembers: log in as a member',
      not_joined: 'press Watch (or Go live) first',
      invalid_state: 'the show ended: press Watch again',
      disconnected: 'the node went away: reload the page',
    };
    return hints[code] ? ` (${hints[code]})` : '';
  }

  $('chat-log').addEventListener('click', (ev) => { moderate(ev); });

  $('chat-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = $('chat-text');
    const text = input.value;
    if (!text.trim()) return;
    const out = await call('chat.send', { text });
    if (out) { input.value = ''; note(''); add(out.message); }
  });

  $('chat-tip').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const credits = parseInt($('chat-tip-credits').value, 10);
    const tipId = `tip-${Date.now()}-${Math.random().toString(36).slice(2, 10)}`;
    const out = await call('chat.tip', { credits, tip_id: tipId });
    if (out) { chat.king = out.king; renderKing(); note(`You tipped ${credits} credits`); }
  });
})();
