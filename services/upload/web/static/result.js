/* Result page: poll the photo's status, draw a box per face, show the numbers; the owner (who holds the delete
   token in localStorage) also gets Share and Delete. */
(function () {
  'use strict';

  var POLL_FIRST_MS = 1000; // results usually arrive within seconds: look often at first
  var POLL_BACKOFF = 1.5; // then back off, so a slow pipeline is not hammered by open tabs
  var POLL_MAX_MS = 8000;
  var SLOW_AFTER_MS = 90000; // past this, tell the visitor it is slower than usual (and keep going)
  var CARD_POLL_MS = 2000; // the card is rendered a moment after scoring
  var CARD_POLL_TRIES = 45;
  var WORD_CLASSES = { hmm: 'hmm', ok: 'ok', nice: 'nice', hot: 'hot', stunning: 'stunning', godlike: 'godlike' };

  var root = document.getElementById('result');
  if (!root) {
    return;
  }
  var H = window.Howhot;
  var photoId = root.getAttribute('data-photo-id');
  var statusUrl = '/api/v1/photos/' + encodeURIComponent(photoId);
  var token = H.getToken(photoId);
  var el = function (id) { return document.getElementById(id); };
  var message = el('status-message');
  var photo = el('photo');
  var boxes = el('boxes');
  var facesList = el('faces');
  var started = Date.now();
  var delay = POLL_FIRST_MS;
  var timer = null;
  var faces = [];
  var share = null; // the share endpoint's answer, once pressed
  var gone = false; // deleted or unknown: nothing to explain about a missing image

  function say(node, text, kind) {
    node.textContent = text;
    node.className = 'message' + (kind ? ' ' + kind : '');
  }

  function step(name, state) {
    var node = root.querySelector('[data-step="' + name + '"]');
    if (node) {
      node.className = 'step ' + state;
      node.setAttribute('aria-current', state === 'active' ? 'step' : 'false');
    }
  }

  function steps(done, active, failed) {
    ['uploaded', 'faces', 'scored', 'card'].forEach(function (name) {
      var state = done.indexOf(name) >= 0 ? 'done' : name === active ? 'active' : name === failed ? 'failed' : '';
      step(name, name === 'card' && !token ? 'hidden' : state); // only the owner can make a card public
    });
  }

  function schedule(ms) {
    window.clearTimeout(timer);
    timer = window.setTimeout(poll, ms);
  }

  function backoff() {
    var wait = delay;
    delay = Math.min(delay * POLL_BACKOFF, POLL_MAX_MS);
    return wait;
  }

  function poll() {
    fetch(statusUrl, { cache: 'no-store', headers: { Accept: 'application/json' } })
      .then(function (response) {
        return response.text().then(function (text) {
          handle(response, H.parseJson(text));
        });
      })
      .catch(function () {
        say(message, 'Connection lost — retrying…', 'warn');
        schedule(backoff());
      });
  }

  function handle(response, body) {
    if (H.isBusy(response.status)) {
      var wait = H.retryAfterMs(response.headers.get('Retry-After'));
      say(message, 'We’re busy right now — retrying in ' + Math.ceil(wait / 1000) + ' s…', 'warn');
      schedule(wait);
      return;
    }
    if (response.status === 404) {
      steps([], null, 'uploaded');
      say(message, 'We can’t find this photo. The link may be mistyped, or it expired.', 'error');
      gone = true;
      hidePhoto();
      el('photo-missing').hidden = true;
      return;
    }
    if (response.status === 410) {
      showDeleted();
      return;
    }
    if (!response.ok || !body) {
      say(message, 'Something went wrong on our side — retrying…', 'warn');
      schedule(backoff());
      return;
    }
    render(body);
  }

  function render(body) {
    var slow = Date.now() - started > SLOW_AFTER_MS;
    switch (body.status) {
      case 'processing':
        steps(['uploaded'], 'faces');
        say(message, slow ? 'This is taking longer than usual. Keep this page open — we’ll get there.' : 'Looking for faces…');
        schedule(backoff());
        break;
      case 'faces_found':
        steps(['uploaded', 'faces'], 'scored');
        say(message, 'Found ' + body.face_count + (body.face_count === 1 ? ' face' : ' faces') + '. Scoring…');
        schedule(backoff());
        break;
      case 'no_face':
        steps(['uploaded'], null, 'faces');
        say(message, 'We couldn’t find a face in this photo. Try a sharper, brighter photo where your face is clearly ' +
          'visible and looking at the camera.', 'error');
        break;
      case 'failed':
        steps(['uploaded'], null, 'scored');
        say(message, (body.reason || 'We could not process this photo.') + ' Please try another photo.', 'error');
        break;
      case 'done':
        steps(['uploaded', 'faces', 'scored'], token ? 'card' : null);
        faces = body.faces || [];
        say(message, faces.length === 1 ? 'Here is your result.' : 'Here are your results: ' + faces.length + ' faces.');
        drawFaces();
        if (token) {
          el('share-button').hidden = false;
          el('share-button').disabled = false;
        }
        break;
      default:
        schedule(backoff());
    }
  }

  function number(value, digits) {
    return Number(value).toFixed(digits);
  }

  function text(tag, className, content) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    node.textContent = content;
    return node;
  }

  function wordClass(word) {
    return 'word word-' + (WORD_CLASSES[String(word || '').toLowerCase()] || 'ok');
  }

  function describeGender(face) {
    var female = face.gender === 'female';
    var sure = female ? face.p_female : 1 - face.p_female;
    var label = female ? 'Female' : 'Male';
    return isNaN(sure) ? label : label + ' · ' + Math.round(sure * 100) + '% sure';
  }

  function faceItem(face, n) {
    var li = document.createElement('li');
    li.className = 'face';
    li.id = 'face-' + n;
    li.appendChild(text('span', 'face-number', String(n)));
    var info = document.createElement('div');
    info.className = 'face-info';
    var age = text('p', 'face-age', '');
    age.appendChild(text('span', 'label', 'Age '));
    age.appendChild(text('strong', 'age-value', number(face.age, 0)));
    // floor/ceil: the range shown must contain the estimate's range (the share card rounds the same way)
    age.appendChild(text('span', 'age-range', ' (' + Math.floor(face.age_low) + '–' + Math.ceil(face.age_high) + ')'));
    info.appendChild(age);
    info.appendChild(text('p', 'face-gender', describeGender(face)));
    if (face.attractiveness === null || face.attractiveness === undefined) {
      var minor = String(face.withheld_reason || '').indexOf('minor') >= 0 || !face.withheld_reason;
      info.appendChild(text('p', 'face-withheld', minor
        ? 'No score: this face may be under 18, and we never rate minors.'
        : 'No score for this face.'));
    } else {
      var score = text('p', 'face-score', '');
      score.appendChild(text('strong', 'score-value', number(face.attractiveness, 1)));
      score.appendChild(text('span', 'score-max', ' / 10 '));
      score.appendChild(text('span', wordClass(face.attractiveness_word), face.attractiveness_word || ''));
      info.appendChild(score);
      if (face.personal_score !== null && face.personal_score !== undefined) {
        info.appendChild(text('p', 'face-personal', 'Your personal score: ' + number(face.personal_score, 1) + ' / 10'));
      }
      var crowd = crowdLine(face);
      if (crowd) {
        info.appendChild(text('p', 'face-crowd', crowd));
      }
    }
    li.appendChild(info);
    return li;
  }

  // what the visitors who rated this face on the rate-others page think (only the count until five have)
  function crowdLine(face) {
    var n = face.crowd_ratings;
    if (typeof n !== 'number' || n < 1) {
      return '';
    }
    var who = n === 1 ? '1 visitor' : n + ' visitors';
    if (typeof face.crowd_score === 'number') {
      return 'Rated by ' + who + ': ' + number(face.crowd_score, 1) + ' / 10';
    }
    return 'Rated by ' + who + ' so far';
  }

  function boxLabel(face, n) {
    if (face.attractiveness === null || face.attractiveness === undefined) {
      return n + ' · ' + number(face.age, 0);
    }
    return n + ' · ' + (face.attractiveness_word || number(face.attractiveness, 1));
  }

  function drawFaces() {
    facesList.textContent = '';
    boxes.textContent = '';
    faces.forEach(function (face, i) {
      facesList.appendChild(faceItem(face, i + 1));
      var box = document.createElement('div');
      box.className = 'face-box';
      box.setAttribute('data-index', String(i));
      box.appendChild(text('span', 'face-box-label', boxLabel(face, i + 1)));
      boxes.appendChild(box);
    });
    placeBoxes();
  }

  /* Boxes are in stored-photo pixels; place them in percent, so they follow the image at any size. */
  function placeBoxes() {
    var w = photo.naturalWidth;
    var h = photo.naturalHeight;
    if (!w || !h) {
      return; // not loaded yet: the load listener calls again
    }
    Array.prototype.forEach.call(boxes.children, function (box) {
      var b = faces[Number(box.getAttribute('data-index'))].box;
      box.style.left = (100 * b[0] / w) + '%';
      box.style.top = (100 * b[1] / h) + '%';
      box.style.width = (100 * (b[2] - b[0]) / w) + '%';
      box.style.height = (100 * (b[3] - b[1]) / h) + '%';
    });
  }

  function hidePhoto() {
    photo.hidden = true;
    el('photo-frame').classList.add('is-empty');
    boxes.hidden = true;
  }

  photo.addEventListener('load', placeBoxes);
  photo.addEventListener('error', function () {
    hidePhoto();
    el('photo-missing').hidden = gone;
  });

  function showDeleted() {
    window.clearTimeout(timer);
    gone = true;
    H.removeToken(photoId);
    hidePhoto();
    el('photo-missing').hidden = true;
    facesList.textContent = '';
    el('owner-actions').hidden = true;
    el('share-panel').hidden = true;
    root.querySelector('.steps').hidden = true;
    say(message, 'Deleted. This photo and everything made from it are gone.', 'done');
  }

  /* -- owner actions ------------------------------------------------------------------------------------------ */

  function ownerRequest(method, url, body) {
    var headers = { 'X-Delete-Token': token, Accept: 'application/json' };
    var init = { method: method, headers: headers, cache: 'no-store' };
    if (body) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(url, init);
  }

  function recordChannel(channel) {
    ownerRequest('POST', statusUrl + '/share', { channel: channel }).catch(function () { /* analytics only */ });
  }

  function shareText() {
    var scored = faces.filter(function (f) { return f.attractiveness_word; })[0];
    return scored ? 'Howhot says I\u2019m ' + scored.attractiveness_word + '! How hot are you?' : 'How old do I look? Try Howhot.';
  }

  function fillSharePanel() {
    var url = share.share_url;
    var words = shareText();
    el('share-url').value = url;
    el('share-x').href = 'https://twitter.com/intent/tweet?text=' + encodeURIComponent(words) + '&url=' + encodeURIComponent(url);
    el('share-facebook').href = 'https://www.facebook.com/sharer/sharer.php?u=' + encodeURIComponent(url);
    el('share-whatsapp').href = 'https://wa.me/?text=' + encodeURIComponent(words + ' ' + url);
    el('download-card').href = share.card_urls.og;
    markCard(share.cards_ready);
    el('native-share').hidden = !navigator.share;
    el('share-panel').hidden = false;
    el('share-url').focus();
    el('share-url').select();
    el('share-url').scrollLeft = 0; // show where the link starts, not its last characters
  }

  function nativeShare() {
    if (!navigator.share) {
      return;
    }
    navigator.share({ title: 'My Howhot result', text: shareText(), url: share.share_url })
      .then(function () { recordChannel('native'); })
      .catch(function () { /* dismissed, or no user gesture left: the button stays */ });
  }

  /* Until the card is rendered, the download link would fetch a 404: show it disabled. */
  function markCard(ready) {
    var link = el('download-card');
    link.setAttribute('aria-disabled', ready ? 'false' : 'true');
    link.title = ready ? '' : 'Your card is still being drawn…';
    if (ready) {
      step('card', 'done');
    }
  }

  function watchCard(tries) {
    if (share.cards_ready || tries <= 0) {
      return;
    }
    fetch(share.card_urls.og, { method: 'HEAD', cache: 'no-store' })
      .then(function (response) {
        share.cards_ready = response.ok;
      })
      .catch(function () { /* keep trying */ })
      .then(function () {
        if (share.cards_ready) {
          markCard(true);
        } else {
          window.setTimeout(function () { watchCard(tries - 1); }, CARD_POLL_MS);
        }
      });
  }

  function pressShare() {
    var button = el('share-button');
    var shareMessage = el('share-message');
    if (share) { // already public: show the options again without counting another share
      fillSharePanel();
      return;
    }
    button.disabled = true;
    ownerRequest('POST', statusUrl + '/share')
      .then(function (response) {
        return response.text().then(function (raw) {
          var body = H.parseJson(raw);
          button.disabled = false;
          if (response.ok && body && body.share_url) {
            share = body;
            fillSharePanel();
            say(shareMessage, 'Your result is public at this link now.', 'done');
            watchCard(CARD_POLL_TRIES);
            if (window.matchMedia && window.matchMedia('(pointer: coarse)').matches) {
              nativeShare(); // phones: the system share sheet is what people expect
            }
          } else if (H.isBusy(response.status)) {
            say(message, 'We’re busy right now — please press Share again in a few seconds.', 'warn');
          } else {
            say(message, H.errorMessage(body, 'Sharing did not work. Please try again.'), 'error');
          }
        });
      })
      .catch(function () {
        button.disabled = false;
        say(message, 'Connection lost. Please try again.', 'error');
      });
  }

  function pressDelete() {
    if (!window.confirm('Delete this photo and all its results for good? This cannot be undone.')) {
      return;
    }
    var button = el('delete-button');
    button.disabled = true;
    ownerRequest('DELETE', statusUrl)
      .then(function (response) {
        return response.text().then(function (raw) {
          button.disabled = false;
          if (response.ok || response.status === 410) {
            showDeleted();
            message.focus(); // the pressed button is gone with the owner actions: keep keyboard focus on the page
          } else if (H.isBusy(response.status)) {
            say(message, 'We’re busy right now — please press Delete again in a few seconds.', 'warn');
          } else {
            say(message, H.errorMessage(H.parseJson(raw), 'Deleting did not work. Please try again.'), 'error');
          }
        });
      })
      .catch(function () {
        button.disabled = false;
        say(message, 'Connection lost. Please try again.', 'error');
      });
  }

  function copyLink() {
    var input = el('share-url');
    var done = function () {
      say(el('share-message'), 'Link copied.', 'done');
      recordChannel('copy');
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(input.value).then(done, function () {
        input.select();
        say(el('share-message'), 'Press Ctrl+C (or long-press) to copy the selected link.');
      });
    } else {
      input.select();
      say(el('share-message'), 'Press Ctrl+C (or long-press) to copy the selected link.');
    }
  }

  if (token) {
    el('owner-actions').hidden = false;
    el('share-button').addEventListener('click', pressShare);
    el('delete-button').addEventListener('click', pressDelete);
    el('copy-button').addEventListener('click', copyLink);
    el('native-share').addEventListener('click', nativeShare);
    ['share-x', 'share-facebook', 'share-whatsapp', 'download-card'].forEach(function (id) {
      el(id).addEventListener('click', function (e) {
        if (e.currentTarget.getAttribute('aria-disabled') === 'true') {
          e.preventDefault(); // the card is not drawn yet
          return;
        }
        recordChannel(e.currentTarget.getAttribute('data-channel'));
      });
    });
  }

  steps(['uploaded'], 'faces');
  poll();
})();
