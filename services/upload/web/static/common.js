/* Shared helpers for the Howhot pages: owner tokens and the latest upload in localStorage, Retry-After, API errors.
   No framework and no build step: each page script is an IIFE that uses window.Howhot. */
(function () {
  'use strict';

  var TOKEN_PREFIX = 'howhot:delete-token:'; // one key per photo, so several uploads from one browser coexist
  var RECENT_KEY = 'howhot:recent-photos'; // JSON list of this browser's uploads, oldest first (tokens have no time)
  var MAX_RECENT = 20;
  var DEFAULT_RETRY_MS = 5000; // when a busy answer carries no Retry-After
  var MAX_RETRY_MS = 60000; // never wait longer than a minute between automatic retries

  function storage() {
    try {
      return window.localStorage; // throws in some privacy modes
    } catch (e) {
      return null;
    }
  }

  function getToken(photoId) {
    var s = storage();
    return s ? s.getItem(TOKEN_PREFIX + photoId) : null;
  }

  function setToken(photoId, token) {
    var s = storage();
    if (s) {
      try {
        s.setItem(TOKEN_PREFIX + photoId, token);
      } catch (e) { /* quota: the owner just will not see Share/Delete */ }
    }
  }

  function removeToken(photoId) {
    var s = storage();
    if (s) {
      s.removeItem(TOKEN_PREFIX + photoId);
    }
  }

  function recentPhotos(s) {
    try {
      var list = JSON.parse(s.getItem(RECENT_KEY) || '[]');
      return Array.isArray(list) ? list.filter(function (id) { return typeof id === 'string'; }) : [];
    } catch (e) {
      return [];
    }
  }

  /* Remember an accepted upload as this browser's latest photo (rate.js names it so ratings carry the rater's gender). */
  function rememberUpload(photoId) {
    var s = storage();
    if (!s) {
      return;
    }
    var list = recentPhotos(s).filter(function (id) { return id !== photoId; });
    list.push(photoId);
    try {
      s.setItem(RECENT_KEY, JSON.stringify(list.slice(-MAX_RECENT)));
    } catch (e) { /* quota: ratings just go without the rater's photo */ }
  }

  /* The newest photo this browser uploaded and still owns (its delete token is here), else null. Uploads made before
     the list existed have no order: a single one is still unambiguous. */
  function latestOwnPhoto() {
    var s = storage();
    if (!s) {
      return null;
    }
    var list = recentPhotos(s);
    for (var i = list.length - 1; i >= 0; i -= 1) {
      if (s.getItem(TOKEN_PREFIX + list[i])) {
        return list[i];
      }
    }
    var owned = [];
    for (var k = 0; k < s.length; k += 1) {
      var key = s.key(k);
      if (key && key.indexOf(TOKEN_PREFIX) === 0) {
        owned.push(key.slice(TOKEN_PREFIX.length));
      }
    }
    return owned.length === 1 ? owned[0] : null;
  }

  /* Milliseconds to wait, from a Retry-After header (seconds or an HTTP date). */
  function retryAfterMs(value, fallbackMs) {
    var fallback = fallbackMs || DEFAULT_RETRY_MS;
    if (!value) {
      return fallback;
    }
    var seconds = Number(value);
    var ms = isNaN(seconds) ? Date.parse(value) - Date.now() : seconds * 1000;
    if (isNaN(ms) || ms < 0) {
      return fallback;
    }
    return Math.min(Math.max(ms, 500), MAX_RETRY_MS);
  }

  /* The API's error shape is {"error": {"code", "message"}}; anything else gets the fallback text. */
  function errorMessage(body, fallback) {
    if (body && body.error && typeof body.error.message === 'string') {
      return body.error.message;
    }
    return fallback;
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (e) {
      return null;
    }
  }

  function isBusy(status) {
    return status === 503 || status === 429;
  }

  window.Howhot = {
    getToken: getToken,
    setToken: setToken,
    removeToken: removeToken,
    rememberUpload: rememberUpload,
    latestOwnPhoto: latestOwnPhoto,
    retryAfterMs: retryAfterMs,
    errorMessage: errorMessage,
    parseJson: parseJson,
    isBusy: isBusy
  };
})();
