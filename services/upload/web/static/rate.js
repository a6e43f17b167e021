/* Rate others: hot-or-not on faces whose owners opted in. Fed by GET /api/v1/rate/next, votes go to
   POST /api/v1/ratings. Until those exist (404) or when nobody is left to rate, a friendly empty state. */
(function () {
  'use strict';

  var BATCH = 10; // faces fetched per request: enough to vote quickly without a wait between faces
  var REFILL_AT = 3; // fetch more when this few are left, so the next face is already loaded
  var MAX_BUSY_RETRIES = 5;
  var NEXT_URL = '/api/v1/rate/next?count=' + BATCH;
  var RATINGS_URL = '/api/v1/ratings';

  var root = document.getElementById('rate');
  if (!root) {
    return;
  }
  var H = window.Howhot;
  var el = function (id) { return document.getElementById(id); };
  var card = el('rate-card');
  var image = el('rate-face');
  var message = el('rate-message');
  var empty = el('rate-empty');
  var queue = [];
  var seen = {};
  var current = null;
  var loading = false;
  var exhausted = false;
  var busyRetries = 0;

  function say(text, kind) {
    message.textContent = text;
    message.className = 'message' + (kind ? ' ' + kind : '');
  }

  function showEmpty() {
    card.hidden = true;
    empty.hidden = false;
    say('');
  }

  function load() {
    if (loading || exhausted) {
      return;
    }
    loading = true;
    fetch(NEXT_URL, { cache: 'no-store', headers: { Accept: 'application/json' } })
      .then(function (response) {
        return response.text().then(function (raw) {
          loading = false;
          var body = H.parseJson(raw);
          if (H.isBusy(response.status) && busyRetries < MAX_BUSY_RETRIES) {
            busyRetries += 1;
            var wait = H.retryAfterMs(response.headers.get('Retry-After'));
            if (!current) {
              say('We’re busy right now — retrying in ' + Math.ceil(wait / 1000) + ' s…', 'warn');
            }
            window.setTimeout(load, wait);
            return;
          }
          busyRetries = 0;
          var fresh = response.ok && body && Array.isArray(body.faces) ? body.faces : [];
          fresh = fresh.filter(function (f) {
            var key = f.photo_id + ':' + f.face_index;
            if (seen[key] || !f.image_url) {
              return false;
            }
            seen[key] = true;
            return true;
          });
          if (!fresh.length) {
            exhausted = true;
          }
          queue = queue.concat(fresh);
          if (!current) {
            next();
          }
        });
      })
      .catch(function () {
        loading = false;
        if (!current) {
          say('Connection lost. Reload the page to try again.', 'error');
        }
      });
  }

  function next() {
    current = queue.shift() || null;
    if (!current) {
      if (exhausted) {
        showEmpty();
      } else {
        load();
      }
      return;
    }
    image.src = current.image_url;
    card.hidden = false;
    empty.hidden = true;
    say('Hot or not?');
    if (queue.length) {
      new Image().src = queue[0].image_url; // warm the cache for the next face
    }
    if (queue.length < REFILL_AT) {
      load();
    }
  }

  function vote(rating) {
    if (!current) {
      return;
    }
    var face = current;
    var body = { photo_id: face.photo_id, face_index: face.face_index, scale: 'hot_or_not', rating: rating };
    var own = H.latestOwnPhoto(); // the rater's own latest photo: the rating records the gender of its face 0
    if (own) {
      body.rater_photo_id = own;
    }
    fetch(RATINGS_URL, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body)
    }).catch(function () { /* a lost vote is not worth interrupting the visitor */ });
    next();
  }

  el('vote-not').addEventListener('click', function () { vote(0); });
  el('vote-hot').addEventListener('click', function () { vote(1); });
  image.addEventListener('error', next); // a face deleted meanwhile: skip it
  document.addEventListener('keydown', function (e) {
    if (card.hidden || e.altKey || e.ctrlKey || e.metaKey || /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName)) {
      return;
    }
    if (e.key === 'ArrowLeft') {
      e.preventDefault();
      vote(0);
    } else if (e.key === 'ArrowRight') {
      e.preventDefault();
      vote(1);
    }
  });

  load();
})();
