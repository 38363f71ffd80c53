// The agent console: an agent token → Socket.IO (the tenant's agent stream) → online visitors from
// presence, conversations with history, replies.
/* global window, document, io, sessionStorage */
(function () {
  'use strict';
  var d = window.chatdDemo;
  var cfg = d.config;
  var $ = d.$;
  var token = sessionStorage.getItem('chatd-demo-agent-token') || '';
  var socket = null;
  var current = null; // selected sessionId
  var visitors = {}; // sessionId -> { userId, sessionId, online, url, unread, last }
  var list = new d.MessageList($('messages'), function (m) {
    return m.sender.type === 'agent';
  });
  var visitorTyping = new d.TypingIndicator($('typing'), 'The visitor is typing…');
  // Typing goes to the conversation selected when it started (a switch stops it first).
  var typingSession = null;
  var typing = new d.TypingEmitter(function (isTyping) {
    if (isTyping) typingSession = current;
    if (socket && typingSession) socket.emit('typing', { sessionId: typingSession, isTyping: isTyping });
  });

  function renderVisitors() {
    var ul = $('visitors');
    ul.innerHTML = '';
    var ids = Object.keys(visitors).sort(function (a, b) {
      var va = visitors[a],
        vb = visitors[b];
      return vb.online - va.online || String(vb.last || '').localeCompare(String(va.last || ''));
    });
    $('no-visitors').hidden = ids.length > 0;
    ids.forEach(function (id) {
      var v = visitors[id];
      var li = document.createElement('li');
      li.className = v.online ? 'online' : 'offline';
      var b = document.createElement('button');
      b.type = 'button';
      b.setAttribute('aria-current', String(id === current));
      b.dataset.session = id;
      var dot = document.createElement('span');
      dot.className = 'dot';
      dot.setAttribute('aria-label', v.online ? 'online' : 'offline');
      b.appendChild(dot);
      b.appendChild(document.createTextNode(v.userId && v.userId !== id ? v.userId : 'Visitor ' + id.slice(0, 10)));
      if (v.unread) {
        var u = document.createElement('span');
        u.className = 'unread';
        u.textContent = String(v.unread);
        u.setAttribute('aria-label', v.unread + ' unread');
        b.appendChild(u);
      }
      var meta = document.createElement('span');
      meta.className = 'meta';
      meta.textContent = (v.online ? 'online' : 'offline') + (v.url ? ' · ' + v.url : '');
      b.appendChild(meta);
      b.addEventListener('click', function () {
        select(id);
      });
      li.appendChild(b);
      ul.appendChild(li);
    });
  }

  function visitor(sessionId) {
    return (visitors[sessionId] = visitors[sessionId] || { sessionId: sessionId, userId: '', online: false, unread: 0, last: '' });
  }

  function select(sessionId) {
    if (socket && current) socket.emit('leave', { sessionId: current });
    current = sessionId;
    visitor(sessionId).unread = 0;
    list.clear();
    visitorTyping.clear();
    typing.stop();
    $('text').disabled = false;
    $('send').disabled = false;
    $('text').placeholder = 'Reply to this visitor…';
    renderVisitors();
    if (socket) socket.emit('join', { sessionId: sessionId });
    d.history(sessionId, token).then(function (r) {
      if (current !== sessionId) return;
      r.messages.forEach(function (m) {
        list.add(m);
      });
      var last = r.messages[r.messages.length - 1];
      if (last && last.sender.type !== 'agent') socket.emit('read', { sessionId: sessionId, messageId: last.id });
    }, d.showError);
  }

  function loadOnline() {
    return d.api('GET', '/api/chat/online-users?tenantId=' + encodeURIComponent(cfg.tenantId), token).then(function (r) {
      r.users.forEach(function (u) {
        var v = visitor(u.sessionId);
        v.userId = u.userId;
        v.online = true;
        v.url = u.url;
      });
      renderVisitors();
    });
  }

  function connect() {
    if (socket) socket.disconnect();
    socket = io({
      path: cfg.socketPath,
      auth: function (cb) {
        cb({ apiKey: cfg.apiKey, token: token });
      },
    });
    socket.on('connect', function () {
      d.setStatus(socket.recovered ? 'signed in (recovered)' : 'signed in');
      d.showError(null);
      if (!socket.recovered) loadOnline().catch(d.showError);
      if (current) socket.emit('join', { sessionId: current });
    });
    socket.on('disconnect', function (reason) {
      d.setStatus('reconnecting… (' + reason + ')');
    });
    socket.on('connect_error', function (err) {
      d.setStatus('signed out');
      d.showError(err.data && err.data.code ? err.message + ' (' + err.data.code + ')' : err);
    });
    socket.on('presence_update', function (p) {
      var v = visitor(p.sessionId);
      v.userId = p.userId;
      v.online = p.status === 'online';
      renderVisitors();
    });
    socket.on('meta_message_created', function (payload) {
      var m = payload.message;
      var v = visitor(m.sessionId);
      v.last = m.createdAt;
      if (m.sessionId === current) {
        list.add(m);
        if (m.sender.type !== 'agent') socket.emit('read', { sessionId: current, messageId: m.id });
      } else if (m.sender.type !== 'agent') {
        v.unread += 1;
      }
      renderVisitors();
    });
    socket.on('typing', function (t) {
      if (t.sessionId === current && t.sender && t.sender.type !== 'agent') visitorTyping.update(t.isTyping);
    });
    // The visitor read up to a message: "Seen" under the agent's last reply before it.
    socket.on('read', function (r) {
      if (r.sessionId === current && r.reader && r.reader.type !== 'agent') list.markSeen(r.messageId);
    });
  }

  // Signed in: the token field is hidden (it is a credential on screen) and Sign out is offered.
  function showSignedIn(signedIn) {
    $('login').hidden = signedIn;
    $('signed-in').hidden = !signedIn;
    $('token').value = '';
  }

  function signOut() {
    if (socket) socket.disconnect();
    socket = null;
    token = '';
    sessionStorage.removeItem('chatd-demo-agent-token');
    current = null;
    visitors = {};
    list.clear();
    visitorTyping.clear();
    typing.stop();
    $('text').disabled = true;
    $('send').disabled = true;
    renderVisitors();
    showSignedIn(false);
    d.setStatus('signed out');
  }

  function signIn(t) {
    token = t.trim();
    if (!token) return;
    sessionStorage.setItem('chatd-demo-agent-token', token);
    d.setStatus('signing in…');
    showSignedIn(true);
    connect();
  }

  $('login').addEventListener('submit', function (ev) {
    ev.preventDefault();
    signIn($('token').value);
  });
  $('demo-token').addEventListener('click', function () {
    d.api('POST', '/demo/agent-token', null, {}).then(function (r) {
      signIn(r.token);
    }, d.showError);
  });
  $('sign-out').addEventListener('click', signOut);
  $('composer').addEventListener('submit', function (ev) {
    ev.preventDefault();
    if (!current) return;
    d.sendComposed(socket, list, typing, function (text, clientMessageId) {
      return { sessionId: current, text: text, clientMessageId: clientMessageId };
    });
  });
  $('text').addEventListener('input', function () {
    if (current) typing.input();
  });

  if (token) signIn(token);
})();
