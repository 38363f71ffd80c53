// Shared by the demo pages: config from the server, JSON calls to chatd, message rendering.
/* global window, document, fetch */
(function () {
  'use strict';
  var config = JSON.parse(document.getElementById('chatd-config').textContent);

  function $(id) {
    return document.getElementById(id);
  }
  /** The page's status line (#status) and error line (#error; cleared by a falsy error). */
  function setStatus(s) {
    $('status').textContent = s;
  }
  function showError(e) {
    $('error').textContent = e ? e.message || String(e) : '';
  }

  function api(method, path, credential, body) {
    var headers = { Accept: 'application/json' };
    if (credential) headers.Authorization = 'Bearer ' + credential;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    return fetch(path, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body) }).then(
      function (res) {
        return res
          .json()
          .catch(function () {
            return {};
          })
          .then(function (json) {
            if (!res.ok) {
              var err = new Error(json.error || 'HTTP ' + res.status);
              err.code = json.code;
              err.status = res.status;
              throw err;
            }
            return json;
          });
      },
    );
  }

  /** The conversation's latest 100 messages, oldest first (`{ messages }`). */
  function history(sessionId, credential) {
    var q = '?tenantId=' + encodeURIComponent(config.tenantId) + '&sessionId=' + encodeURIComponent(sessionId) + '&limit=100';
    return api('GET', '/api/chat/messages' + q, credential);
  }

  function randomId(prefix) {
    var bytes = new Uint8Array(12);
    window.crypto.getRandomValues(bytes);
    return (
      prefix +
      Array.prototype.map
        .call(bytes, function (b) {
          return ('0' + b.toString(16)).slice(-2);
        })
        .join('')
    );
  }

  function time(iso) {
    try {
      return new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    } catch (e) {
      return '';
    }
  }

  /** A message list that renders each message id once, in seq order, and updates pending ones. */
  function MessageList(el, isMine) {
    this.el = el;
    this.isMine = isMine;
    this.byId = {};
    this.byClientId = {};
  }
  MessageList.prototype.clear = function () {
    this.el.innerHTML = '';
    this.byId = {};
    this.byClientId = {};
    this.lastRead = null;
  };
  MessageList.prototype.addPending = function (clientMessageId, text) {
    var li = this.render({ text: text, sender: { type: 'me' }, seq: Infinity }, true);
    li.classList.add('pending');
    this.byClientId[clientMessageId] = li;
    this.el.appendChild(li);
    this.scroll();
    return li;
  };
  MessageList.prototype.render = function (m, mine) {
    var li = document.createElement('li');
    li.className = m.sender.type === 'system' ? 'system' : mine ? 'mine' : 'theirs';
    var who = document.createElement('span');
    who.className = 'who';
    var label =
      m.sender.type === 'system'
        ? ''
        : mine
          ? 'You'
          : m.sender.type === 'agent'
            ? 'Agent ' + m.sender.id
            : m.sender.type === 'user'
              ? m.sender.id
              : 'Visitor';
    who.textContent = label + (m.createdAt ? (label ? ' · ' : '') + time(m.createdAt) : '');
    var bubble = document.createElement('span');
    bubble.className = 'bubble';
    bubble.textContent = m.text;
    li.appendChild(who);
    li.appendChild(bubble);
    li.dataset.seq = String(m.seq);
    if (m.id) li.dataset.id = m.id;
    return li;
  };
  /** Adds (or confirms) a stored message; returns false when it was already shown. */
  MessageList.prototype.add = function (m) {
    if (this.byId[m.id]) return false;
    var mine = this.isMine(m);
    var pending = m.clientMessageId && this.byClientId[m.clientMessageId];
    var li = this.render(m, mine);
    if (pending) {
      pending.replaceWith(li);
      delete this.byClientId[m.clientMessageId];
    } else {
      // Insert in seq order (history pages and live events may interleave); pending ones stay last.
      var after = null;
      var items = this.el.children;
      for (var i = 0; i < items.length; i++) {
        if (items[i].classList.contains('pending') || Number(items[i].dataset.seq) > m.seq) {
          after = items[i];
          break;
        }
      }
      this.el.insertBefore(li, after);
    }
    this.byId[m.id] = li;
    // A receipt may arrive before the message it names (or before mine was confirmed): apply it now.
    if (this.lastRead) this.markSeen(this.lastRead);
    this.scroll();
    return true;
  };
  MessageList.prototype.scroll = function () {
    this.el.scrollTop = this.el.scrollHeight;
  };
  /**
   * A read receipt from the other side: "Seen" under the last of my messages at or before the one
   * they read (they read up to that message; the receipt names theirs or mine).
   */
  MessageList.prototype.markSeen = function (messageId) {
    this.lastRead = messageId;
    var read = this.byId[messageId];
    if (!read) return;
    var upTo = Number(read.dataset.seq);
    var last = null;
    var items = this.el.children;
    for (var i = 0; i < items.length; i++) {
      var li = items[i];
      if (li.classList.contains('mine') && !li.classList.contains('pending') && Number(li.dataset.seq) <= upTo) last = li;
    }
    if (!last || last.classList.contains('seen')) return;
    var old = this.el.querySelectorAll('li.seen');
    for (var j = 0; j < old.length; j++) {
      if (Number(old[j].dataset.seq) > Number(last.dataset.seq)) return; // a later receipt already shown
      old[j].classList.remove('seen');
      var mark = old[j].querySelector('.seen-mark');
      if (mark) mark.remove();
    }
    last.classList.add('seen');
    var seen = document.createElement('span');
    seen.className = 'seen-mark';
    seen.textContent = 'Seen';
    last.appendChild(seen);
  };

  /**
   * Sends typing state for one conversation: true when input starts (again every 3 s while it goes
   * on), false after 1.5 s without input and at once when the message is sent, so typing right
   * after sending starts a new burst instead of being swallowed by the old timer.
   */
  function TypingEmitter(emit) {
    this.emit = emit;
    this.idle = null;
    this.lastTrue = 0;
  }
  TypingEmitter.prototype.input = function () {
    var self = this;
    var now = Date.now();
    if (!this.idle || now - this.lastTrue > 3000) {
      this.lastTrue = now;
      this.emit(true);
    }
    window.clearTimeout(this.idle);
    this.idle = window.setTimeout(function () {
      self.stop();
    }, 1500);
  };
  TypingEmitter.prototype.stop = function () {
    if (!this.idle) return;
    window.clearTimeout(this.idle);
    this.idle = null;
    this.emit(false);
  };

  /**
   * Shows the other side's typing from their typing events only (a message does not clear it: the
   * sender's own `false` does, and typing that starts right after a send stays visible); hidden after
   * 6 s without a `true`, for a sender that went away mid-word.
   */
  function TypingIndicator(el, text) {
    this.el = el;
    this.text = text;
    this.expiry = null;
  }
  TypingIndicator.prototype.update = function (isTyping) {
    var self = this;
    window.clearTimeout(this.expiry);
    this.el.textContent = isTyping ? this.text : '';
    if (isTyping)
      this.expiry = window.setTimeout(function () {
        self.el.textContent = '';
      }, 6000);
  };
  TypingIndicator.prototype.clear = function () {
    this.update(false);
  };

  /**
   * The composer's submit: the trimmed text of #text (nothing when empty), the input cleared, the
   * typing burst ended (typing again starts a new one), the message shown as pending and sent with
   * `body(clientMessageId)`; the ack arrives once it is stored (Socket.IO buffers while disconnected).
   */
  function sendComposed(socket, list, typing, body) {
    var input = $('text');
    var text = input.value.trim();
    if (!text) return;
    input.value = '';
    typing.stop();
    var clientMessageId = randomId('c');
    list.addPending(clientMessageId, text);
    socket.timeout(15000).emit('message', body(text, clientMessageId), function (err, ack) {
      if (err || !ack || !ack.success) showError(err || new Error((ack && ack.error) || 'not sent'));
    });
  }

  window.chatdDemo = {
    config: config,
    $: $,
    setStatus: setStatus,
    showError: showError,
    api: api,
    history: history,
    sendComposed: sendComposed,
    randomId: randomId,
    MessageList: MessageList,
    TypingEmitter: TypingEmitter,
    TypingIndicator: TypingIndicator,
  };
})();
