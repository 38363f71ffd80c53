// The agent console: an agent token → the inbox (GET /api/chat/conversations, kept current by
// `conversation_updated` on the agent stream) → a conversation's history, replies, assignment and
// status. Visitors who wrote and left are in the inbox like those online now.
/* global window, document, io, sessionStorage */
(function () {
  'use strict';
  var d = window.chatdDemo;
  var cfg = d.config;
  var $ = d.$;
  var token = sessionStorage.getItem('chatd-demo-agent-token') || '';
  var me = ''; // this agent's id: the token's `sub`
  var socket = null;
  var current = null; // selected sessionId
  var tab = 'open'; // open | pending | resolved | all
  var convs = {}; // sessionId -> ConversationSummary (+ version, when an event carried one)
  var nextCursor = {}; // tab -> the cursor of its next page, or null
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

  /** The `sub` of a JWT (display only: the server decides who "me" is). */
  function subjectOf(jwt) {
    try {
      var part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(window.atob(part)).sub || '';
    } catch (e) {
      return '';
    }
  }

  /**
   * Keeps the newest summary of a conversation. Events carry `version` (one more per change)
   * and may arrive after an HTTP answer that already saw a later state: an older version is dropped.
   */
  function merge(summary, version) {
    var old = convs[summary.sessionId];
    if (version !== undefined && old && old.version !== undefined && version < old.version) return;
    var next = Object.assign({}, summary);
    next.version = version !== undefined ? version : old && old.version;
    convs[summary.sessionId] = next;
  }

  function visitorName(c) {
    var v = c.visitor || {};
    return v.name || v.userId || 'Visitor ' + c.sessionId.slice(0, 10);
  }

  function assigneeLabel(c) {
    if (!c.assignee) return 'unassigned';
    return c.assignee === me ? 'assigned to you' : 'assigned to ' + c.assignee;
  }

  function inTab(c) {
    return tab === 'all' || c.status === tab;
  }

  function renderInbox() {
    var ul = $('conversations');
    ul.innerHTML = '';
    var shown = Object.keys(convs)
      .map(function (id) {
        return convs[id];
      })
      .filter(inTab)
      .sort(function (a, b) {
        return String(b.lastActivityAt).localeCompare(String(a.lastActivityAt)) || (a.sessionId < b.sessionId ? -1 : 1);
      });
    $('no-conversations').hidden = shown.length > 0;
    $('more').hidden = !nextCursor[tab];
    shown.forEach(function (c) {
      var li = document.createElement('li');
      li.className = (c.online ? 'online' : 'offline') + ' status-' + c.status;
      li.dataset.session = c.sessionId;
      var b = document.createElement('button');
      b.type = 'button';
      b.setAttribute('aria-current', String(c.sessionId === current));
      var dot = document.createElement('span');
      dot.className = 'dot';
      dot.setAttribute('aria-label', c.online ? 'online' : 'offline');
      b.appendChild(dot);
      var name = document.createElement('span');
      name.className = 'name';
      name.textContent = visitorName(c);
      b.appendChild(name);
      if (c.unreadCount) {
        var u = document.createElement('span');
        u.className = 'unread';
        u.textContent = String(c.unreadCount);
        u.setAttribute('aria-label', c.unreadCount + ' unread');
        b.appendChild(u);
      }
      var last = document.createElement('span');
      last.className = 'meta last';
      last.textContent = c.lastMessage ? c.lastMessage.text : '';
      b.appendChild(last);
      var meta = document.createElement('span');
      meta.className = 'meta state';
      meta.textContent = c.status + ' · ' + assigneeLabel(c) + ' · ' + (c.online ? 'online' : 'left');
      b.appendChild(meta);
      b.addEventListener('click', function () {
        select(c.sessionId);
      });
      li.appendChild(b);
      ul.appendChild(li);
    });
    renderHead();
  }

  /** The selected conversation's header: who, state, the actions that apply, and the away notice. */
  function renderHead() {
    var c = current && convs[current];
    $('conv-head').hidden = !c;
    $('away-notice').hidden = !c || c.online;
    if (!c) return;
    $('conv-name').textContent = visitorName(c) + (c.visitor && c.visitor.email ? ' <' + c.visitor.email + '>' : '');
    $('conv-state').textContent = c.status + ' · ' + assigneeLabel(c);
    $('assign-me').hidden = c.assignee === me;
    $('mark-pending').hidden = c.status === 'pending';
    $('resolve').textContent = c.status === 'resolved' ? 'Reopen' : 'Resolve';
    if (!c.online) {
      $('away-notice').textContent =
        cfg.emailReplies && c.visitor && c.visitor.email
          ? 'The visitor has left; your reply will be emailed to ' + c.visitor.email + '.'
          : 'The visitor has left; they will see your reply when they come back.';
    }
  }

  function loadPage(status, before) {
    var q = '?tenantId=' + encodeURIComponent(cfg.tenantId) + '&status=' + status + '&limit=50';
    if (before) q += '&before=' + encodeURIComponent(before);
    return d.api('GET', '/api/chat/conversations' + q, token).then(function (r) {
      r.conversations.forEach(function (c) {
        merge(c);
      });
      nextCursor[status] = r.nextCursor || null;
      renderInbox();
    });
  }

  function select(sessionId) {
    if (socket && current && current !== sessionId) socket.emit('leave', { sessionId: current });
    current = sessionId;
    list.clear();
    visitorTyping.clear();
    typing.stop();
    $('text').disabled = false;
    $('send').disabled = false;
    $('text').placeholder = 'Reply to this visitor…';
    renderInbox();
    if (socket) socket.emit('join', { sessionId: sessionId });
    d.history(sessionId, token).then(function (r) {
      if (current !== sessionId) return;
      r.messages.forEach(function (m) {
        list.add(m);
      });
      markRead(r.messages);
    }, d.showError);
  }

  /** Moves the agents' read pointer to the newest message from the visitor's side, if any. */
  function markRead(messages) {
    for (var i = messages.length - 1; i >= 0; i--) {
      var t = messages[i].sender.type;
      if (t === 'visitor' || t === 'user') {
        if (socket) socket.emit('read', { sessionId: messages[i].sessionId, messageId: messages[i].id });
        return;
      }
    }
  }

  function act(path, body) {
    if (!current) return;
    d.api(
      'POST',
      '/api/chat/conversations/' + encodeURIComponent(current) + path,
      token,
      Object.assign({ tenantId: cfg.tenantId }, body),
    ).then(function (summary) {
      merge(summary);
      renderInbox();
    }, d.showError);
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
      // Not recovered: events were missed, so the first page is read again (the events keep it current).
      if (!socket.recovered) loadPage(tab).catch(d.showError);
      if (current) socket.emit('join', { sessionId: current });
    });
    socket.on('disconnect', function (reason) {
      d.setStatus('reconnecting… (' + reason + ')');
    });
    socket.on('connect_error', function (err) {
      d.setStatus('signed out');
      d.showError(err.data && err.data.code ? err.message + ' (' + err.data.code + ')' : err);
    });
    socket.on('conversation_updated', function (payload) {
      merge(payload.conversation, payload.version);
      renderInbox();
    });
    socket.on('presence_update', function (p) {
      var c = convs[p.sessionId];
      if (!c) return;
      c.online = p.status === 'online';
      renderInbox();
    });
    socket.on('meta_message_created', function (payload) {
      var m = payload.message;
      if (m.sessionId !== current) return;
      list.add(m);
      markRead([m]);
    });
    socket.on('typing', function (t) {
      if (t.sessionId === current && t.sender && t.sender.type !== 'agent') visitorTyping.update(t.isTyping);
    });
    // The visitor read up to a message: "Seen" under the agent's last reply before it.
    socket.on('read', function (r) {
      if (r.sessionId === current && r.reader && r.reader.type !== 'agent' && r.reader.type !== 'system') list.markSeen(r.messageId);
    });
  }

  // Signed in: the token field is hidden (it is a credential on screen) and Sign out is offered.
  function showSignedIn(signedIn) {
    $('login').hidden = signedIn;
    $('signed-in').hidden = !signedIn;
    $('token').value = '';
    $('signed-in-as').textContent = signedIn ? 'Signed in as ' + (me || 'an agent') + ' (the token is kept in this tab only).' : '';
  }

  function signOut() {
    if (socket) socket.disconnect();
    socket = null;
    token = '';
    me = '';
    sessionStorage.removeItem('chatd-demo-agent-token');
    current = null;
    convs = {};
    nextCursor = {};
    list.clear();
    visitorTyping.clear();
    typing.stop();
    $('text').disabled = true;
    $('send').disabled = true;
    renderInbox();
    showSignedIn(false);
    d.setStatus('signed out');
  }

  function signIn(t) {
    token = t.trim();
    if (!token) return;
    me = subjectOf(token);
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
  Array.prototype.forEach.call(document.querySelectorAll('.tabs [role=tab]'), function (b) {
    b.addEventListener('click', function () {
      tab = b.dataset.status;
      Array.prototype.forEach.call(document.querySelectorAll('.tabs [role=tab]'), function (o) {
        o.setAttribute('aria-selected', String(o === b));
      });
      renderInbox();
      if (token) loadPage(tab).catch(d.showError);
    });
  });
  $('more').addEventListener('click', function () {
    if (nextCursor[tab]) loadPage(tab, nextCursor[tab]).catch(d.showError);
  });
  $('assign-me').addEventListener('click', function () {
    act('/assign', { assignee: 'me' });
  });
  $('mark-pending').addEventListener('click', function () {
    act('/status', { status: 'pending' });
  });
  $('resolve').addEventListener('click', function () {
    var c = current && convs[current];
    act('/status', { status: c && c.status === 'resolved' ? 'open' : 'resolved' });
  });
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

  renderInbox();
  if (token) signIn(token);
})();
