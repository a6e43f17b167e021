/* Rate others: hot-or-not on faces whose owners opted in. Fed by GET /api/v1/rate/next, votes go to
   POST /api/v1/ratings. Until those exist (404) or when nobody is left to rate, a friendly empty state. */
(function () {
  'use strict';

  var BATCH = 10; // faces fetched per request: enough to vote quickly without a wait between faces
  var REFILL_AT = 3; // fetch more when this few are left, so the next face is already loaded
  var MAX_BUSY_RETRIES = 5;
  var MAX_STALE_REFILLS = 3; // a refill of only already-shown faces: ask again this often before calling it a day
  var STALE_REFILL_MS = 2000; // long enough for the latest votes to reach the scoring service's queue
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
  var shown = false; // the current face's image has loaded: until then a vote would be on a face nobody saw
  var loading = false;
  var exhausted = false;
  var busyRetries = 0;
  var staleRefills = 0;
  var refillPending = false; // a stale refill waits for the latest votes to arrive (see load)
  var ownRefused = false; // the server refused this browser's remembered photo as the rater's own

  function say(text, kind) {
    message.textContent = text;
    message.className = 'message' + (kind ? ' ' + kind : '');
  }

  function showEmpty() {
    var hadFocus = card.contains(document.activeElement); // a vote button, about to be hidden with the card
    card.hidden = true;
    empty.hidden = false;
    say('');
    if (hadFocus) {
      el('rate-empty-title').focus(); // not lost to the page's top, and the empty state is read out
    }
  }

  function load() {
    if (loading || exhausted || refillPending) {
      return; // a stale refill's timer is pending: it loads when the latest votes had time to arrive
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
          var offered = response.ok && body && Array.isArray(body.faces) ? body.faces : [];
          var fresh = offered.filter(function (f) {
            var key = f.rate_id + ':' + f.face_index;
            if (seen[key] || !f.image_url) {
              return false;
            }
            seen[key] = true;
            return true;
          });
          if (!offered.length) {
            exhausted = true; // the server has nobody left for this visitor
          } else if (!fresh.length && staleRefills < MAX_STALE_REFILLS) {
            // only faces already shown: our latest votes have not reached the queue yet; ask again shortly
            staleRefills += 1;
            refillPending = true;
            window.setTimeout(function () {
              refillPending = false;
              load();
            }, STALE_REFILL_MS);
            return;
          } else if (!fresh.length) {
            exhausted = true;
          } else {
            staleRefills = 0;
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
        card.hidden = true; // no face to vote on until the next ones arrive
        say('Finding more faces…');
        load();
      }
      return;
    }
    if (image.getAttribute('src') !== current.image_url) { // the same URL again fires no new load event
      shown = false; // a double click or a held key must not vote on the next face before it appears
      card.setAttribute('aria-busy', 'true'); // assistive technology (and tests) learn when the face is there
      image.src = current.image_url;
    }
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
    if (!current || !shown) {
      return;
    }
    var face = current;
    var body = { rate_id: face.rate_id, face_index: face.face_index, scale: 'hot_or_not', rating: rating };
    var own = ownRefused ? null : H.latestOwnPhoto(); // the rater's own photo: the rating records its face 0's gender
    if (own) {
      body.rater_photo_id = own;
    }
    send(body);
    next();
  }

  function send(body) {
    fetch(RATINGS_URL, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body)
    }).then(function (response) {
      if (response.status !== 403 || !body.rater_photo_id) {
        return;
      }
      return response.text().then(function (raw) {
        var answer = H.parseJson(raw);
        if (answer && answer.error && answer.error.code === 'not_your_photo') {
          // this browser remembers a photo another visitor id owns (cookies cleared): vote without it from now on
          ownRefused = true;
          delete body.rater_photo_id;
          send(body);
        }
      });
    }).catch(function () { /* a lost vote is not worth interrupting the visitor */ });
  }

  el('vote-not').addEventListener('click', function () { vote(0); });
  el('vote-hot').addEventListener('click', function () { vote(1); });
  image.addEventListener('load', function () {
    shown = true;
    card.setAttribute('aria-busy', 'false');
  });
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
