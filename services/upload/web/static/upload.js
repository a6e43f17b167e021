/* Landing page: pick (file, camera or drag & drop), check, upload with a progress bar, then open the result page. */
(function () {
  'use strict';

  var ACCEPTED_TYPES = ['image/jpeg', 'image/png', 'image/webp'];
  var MAX_BUSY_RETRIES = 6; // a minute or two of "we're busy" before asking the visitor to try again themselves
  var UPLOAD_URL = '/api/v1/photos';
  var COUNTDOWN_TICK_MS = 1000; // the busy message counts down once a second
  var MAX_BUSY_WAIT_MS = 60000; // never park a visitor longer than a minute per attempt, whatever the server says

  var form = document.getElementById('upload-form');
  if (!form) {
    return;
  }
  var maxBytes = Number(form.getAttribute('data-max-bytes'));
  var maxMb = form.getAttribute('data-max-mb');
  var photoInput = document.getElementById('photo-input');
  var cameraInput = document.getElementById('camera-input');
  var dropZone = document.getElementById('drop-zone');
  var rateable = document.getElementById('rateable');
  var ephemeral = document.getElementById('ephemeral');
  var progressWrap = document.getElementById('progress-wrap');
  var progress = document.getElementById('upload-progress');
  var progressLabel = document.getElementById('progress-label');
  var message = document.getElementById('upload-message');
  var busy = false;
  var opened = false; // an upload was accepted and its result page opened

  function say(text, kind) {
    message.textContent = text;
    message.className = 'message' + (kind ? ' ' + kind : '');
  }

  function setBusy(on) {
    busy = on;
    form.classList.toggle('is-busy', on);
    photoInput.disabled = on;
    cameraInput.disabled = on;
  }

  function problemWith(file) {
    if (file.type && ACCEPTED_TYPES.indexOf(file.type) === -1) {
      return 'That file is not a JPEG, PNG or WebP photo. Please choose another one.';
    }
    if (file.size === 0) {
      return 'That file is empty. Please choose another photo.';
    }
    if (maxBytes && file.size > maxBytes) {
      return 'That photo is too big (' + (file.size / 1048576).toFixed(1) + ' MB). The limit is ' + maxMb + ' MB.';
    }
    return null;
  }

  function showProgress(percent, label) {
    progressWrap.hidden = false;
    progress.value = percent;
    progress.textContent = Math.round(percent) + '%';
    progressLabel.textContent = label;
  }

  // Honour Retry-After (503 busy/overloaded, 429 rate limited): show a live countdown, then send the same file again.
  function retryAfterCountdown(file, attempt, waitMs) {
    var retryAt = Date.now() + waitMs;
    function tick() {
      var left = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
      if (left <= 0) {
        say('Retrying now…', 'warn');
        send(file, attempt + 1);
        return;
      }
      say('We’re busy right now — retrying in ' + left + ' s…', 'warn');
      window.setTimeout(tick, COUNTDOWN_TICK_MS);
    }
    tick();
  }

  function send(file, attempt) {
    var data = new FormData();
    data.append('photo', file, file.name || 'photo.jpg');
    if (rateable.checked) {
      data.append('rateable', 'true');
    }
    if (ephemeral.checked) {
      data.append('store', 'false');
    }
    var xhr = new XMLHttpRequest();
    xhr.open('POST', UPLOAD_URL);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', function (e) {
      if (e.lengthComputable) {
        var percent = (e.loaded / e.total) * 100;
        showProgress(percent, percent >= 100 ? 'Checking your photo…' : 'Uploading… ' + Math.round(percent) + '%');
      }
    });
    xhr.addEventListener('load', function () {
      var body = window.Howhot.parseJson(xhr.responseText);
      if (xhr.status === 202 && body && body.photo_id) {
        window.Howhot.setToken(body.photo_id, body.delete_token);
        window.Howhot.rememberUpload(body.photo_id);
        showProgress(100, 'Done! Opening your result…');
        opened = true;
        window.location.assign('/p/' + encodeURIComponent(body.photo_id));
        return;
      }
      if (window.Howhot.isBusy(xhr.status) && attempt < MAX_BUSY_RETRIES) {
        var wait = Math.min(window.Howhot.retryAfterMs(xhr.getResponseHeader('Retry-After')), MAX_BUSY_WAIT_MS);
        retryAfterCountdown(file, attempt, wait);
        return;
      }
      setBusy(false);
      progressWrap.hidden = true;
      say(window.Howhot.errorMessage(body, 'The upload did not work (error ' + xhr.status + '). Please try again.'), 'error');
    });
    xhr.addEventListener('error', function () {
      setBusy(false);
      progressWrap.hidden = true;
      say('The connection dropped during the upload. Please check your connection and try again.', 'error');
    });
    xhr.send(data);
  }

  function start(file) {
    if (busy || !file) {
      return;
    }
    var problem = problemWith(file);
    if (problem) {
      say(problem, 'error');
      return;
    }
    say('');
    setBusy(true);
    showProgress(0, 'Uploading…');
    send(file, 0);
  }

  function fromInput(e) {
    start(e.target.files && e.target.files[0]);
    e.target.value = ''; // picking the same file again still fires change
  }

  // Back from the result page restores this page from the back/forward cache exactly as it was left (busy, pickers
  // disabled, "Opening your result…"): make it ready for another photo.
  window.addEventListener('pageshow', function (e) {
    if (e.persisted && opened) {
      opened = false;
      setBusy(false);
      progressWrap.hidden = true;
      say('');
    }
  });

  photoInput.addEventListener('change', fromInput);
  cameraInput.addEventListener('change', fromInput);
  form.addEventListener('submit', function (e) {
    e.preventDefault();
    start(photoInput.files && photoInput.files[0]);
  });

  ['dragenter', 'dragover'].forEach(function (type) {
    dropZone.addEventListener(type, function (e) {
      e.preventDefault();
      dropZone.classList.add('is-dragging');
    });
  });
  ['dragleave', 'drop'].forEach(function (type) {
    dropZone.addEventListener(type, function () {
      dropZone.classList.remove('is-dragging');
    });
  });
  dropZone.addEventListener('drop', function (e) {
    e.preventDefault();
    start(e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0]);
  });
})();
