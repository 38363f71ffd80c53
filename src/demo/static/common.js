// Shared by the demo pages: config from the server, JSON calls to chatd, message rendering.
/* global window, document, fetch */
(function () {
  'use strict';
  var config = JSON.parse(document.getElementById('chatd-config').textContent);

  function api(method, path, credential, body) {
    var headers = { Accept: 'application/json' };
    if (credential) headers.Authorization = 'Bearer ' + credential;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    return fetch(path, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (res) {
        return res.json().catch(function () { return {}; }).then(function (json) {
          if (!res.ok) {
            var err = new Error(json.error || ('HTTP ' + res.status));
            err.code = json.code;
            err.status = res.status;
            throw err;
          }
          return json;
        });
      });
  }

  function randomId(prefix) {
    var bytes = new Uint8Array(12);
    window.crypto.getRandomValues(bytes);
    return prefix + Array.prototype.map.call(bytes, function (b) { return ('0' + b.toString(16)).slice(-2); }).join('');
  }

  function time(iso) {
    try { return new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }); } catch (e) { return ''; }
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
    li.className = mine ? 'mine' : 'theirs';
    var who = document.createElement('span');
    who.className = 'who';
    var label = mine ? 'You' : m.sender.type === 'agent' ? 'Agent ' + m.sender.id : m.sender.type === 'user' ? m.sender.id : 'Visitor';
    who.textContent = label + (m.createdAt ? ' · ' + time(m.createdAt) : '');
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
    this.scroll();
    return true;
  };
  MessageList.prototype.scroll = function () {
    this.el.scrollTop = this.el.scrollHeight;
  };

  window.chatdDemo = { config: config, api: api, randomId: randomId, MessageList: MessageList };
})();
