/* Shared helpers for the Howhot pages: owner tokens in localStorage, Retry-After, API error messages.
   No framework and no build step: each page script is an IIFE that uses window.Howhot. */
(function () {
  'use strict';

  var TOKEN_PREFIX = 'howhot:delete-token:'; // one key per photo, so several uploads from one browser coexist
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
    retryAfterMs: retryAfterMs,
    errorMessage: errorMessage,
    parseJson: parseJson,
    isBusy: isBusy
  };
})();
