// The visitor widget: anonymous token → Socket.IO with recovery → send, receive, typing, history.
/* global window, document, io, localStorage */
(function () {
  'use strict';
  var d = window.chatdDemo;
  var cfg = d.config;
  var $ = d.$;

  // The widget keeps its session and fingerprint across reloads, as a real widget would.
  var sessionId = localStorage.getItem('chatd-demo-session') || d.randomId('s');
  var fingerprint = localStorage.getItem('chatd-demo-fp') || d.randomId('fp');
  localStorage.setItem('chatd-demo-session', sessionId);
  localStorage.setItem('chatd-demo-fp', fingerprint);
  var token = null;

  var list = new d.MessageList($('messages'), function (m) {
    return m.sender.type === 'visitor' || m.sender.type === 'user';
  });

  function fetchToken() {
    return d
      .api('POST', '/api/chat/anonymous-token', cfg.apiKey, { tenantId: cfg.tenantId, sessionId: sessionId, fingerprint: fingerprint })
      .then(function (r) {
        token = r.token;
        return token;
      });
  }

  function loadHistory() {
    return d.history(sessionId, token).then(function (r) {
      r.messages.forEach(function (m) {
        list.add(m);
      });
    });
  }

  var socket;
  function connect() {
    socket = io({
      path: cfg.socketPath,
      // A function: called on every (re)connection, so a refreshed token is used.
      auth: function (cb) {
        cb({
          apiKey: cfg.apiKey,
          token: token,
          sessionId: sessionId,
          fingerprint: fingerprint,
          domain: window.location.hostname,
          origin: window.location.origin,
          url: window.location.href,
        });
      },
    });
    socket.on('connect', function () {
      d.setStatus(socket.recovered ? 'connected (recovered)' : 'connected');
      d.showError(null);
      if (!socket.recovered) loadHistory().catch(d.showError);
    });
    socket.on('disconnect', function (reason) {
      d.setStatus('reconnecting… (' + reason + ')');
    });
    socket.on('connect_error', function (err) {
      var code = err.data && err.data.code;
      if (code === 'token_expired' || code === 'token_invalid') {
        // Final for socket.io-client: refresh the token and connect again.
        d.setStatus('refreshing token…');
        fetchToken().then(function () {
          socket.connect();
        }, d.showError);
        return;
      }
      d.setStatus('cannot connect');
      d.showError(err);
    });
    socket.on('meta_message_created', function (payload) {
      var m = payload.message;
      if (m.sessionId !== sessionId) return;
      list.add(m);
      if (m.sender.type === 'agent') socket.emit('read', { sessionId: sessionId, messageId: m.id });
    });
    socket.on('availability_changed', showAvailability);
    socket.on('typing', function (t) {
      if (t.sender && t.sender.type === 'agent') agentTyping.update(t.isTyping);
    });
    // The agent read up to a message: "Seen" under the visitor's last message before it.
    socket.on('read', function (r) {
      if (r.sessionId === sessionId && r.reader && r.reader.type === 'agent') list.markSeen(r.messageId);
    });
  }

  // Offline continuity: while nobody is available, the away message and a form for an address the
  // agents' replies are emailed to. The state comes from GET /api/chat/availability (with the
  // publishable key, before any token) and then live from `availability_changed`.
  var DEFAULT_AWAY = 'Nobody is here right now. Leave your email and we will answer you there.';
  function showAvailability(a) {
    $('away').hidden = a.available;
    if (a.available) return;
    $('away-message').textContent = a.awayMessage || DEFAULT_AWAY;
    $('away-next').textContent = a.nextOpenAt ? 'We are back ' + new Date(a.nextOpenAt).toLocaleString() + '.' : '';
  }
  function loadAvailability() {
    return d
      .api('GET', '/api/chat/availability?tenantId=' + encodeURIComponent(cfg.tenantId), cfg.apiKey)
      .then(showAvailability, d.showError);
  }
  $('contact-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var email = $('contact-email').value.trim();
    var name = $('contact-name').value.trim();
    var body = { tenantId: cfg.tenantId, sessionId: sessionId, fingerprint: fingerprint, email: email };
    if (name) body.name = name;
    d.api('POST', '/webchat/contact', token, body).then(function () {
      $('contact-form').hidden = true;
      $('contact-done').hidden = false;
      $('contact-done').textContent = 'Thanks: we will email our reply to ' + email + '.';
      d.showError(null);
    }, d.showError);
  });

  var agentTyping = new d.TypingIndicator($('typing'), 'The agent is typing…');
  var typing = new d.TypingEmitter(function (isTyping) {
    if (socket && socket.connected) socket.emit('typing', { sessionId: sessionId, isTyping: isTyping });
  });
  $('text').addEventListener('input', function () {
    typing.input();
  });

  $('composer').addEventListener('submit', function (ev) {
    ev.preventDefault();
    d.sendComposed(socket, list, typing, function (text, clientMessageId) {
      return {
        text: text,
        tenantId: cfg.tenantId,
        sessionId: sessionId,
        fingerprint: fingerprint,
        clientMessageId: clientMessageId,
        domain: window.location.hostname,
        origin: window.location.origin,
        url: window.location.href,
        referrer: document.referrer,
      };
    });
  });

  loadAvailability();
  fetchToken().then(connect, function (e) {
    d.setStatus('cannot get a token');
    d.showError(e);
  });
})();
