/* The payment page: copy buttons, the countdown to expiry, and the status polled every 2 s
   from the page's JSON endpoint (data-status-url) until the payment is final. No inline
   script, no dependency. */
(function () {
  "use strict";

  var POLL_MS = 2000;
  var NO_MONEY = { expired: true, failed: true, cancelled: true };
  var hashPolls = 30; // after a final status without a hash: one more minute at most
  var root = document.getElementById("payment");
  if (!root) {
    return;
  }
  var statusUrl = root.getAttribute("data-status-url");
  var countdown = document.getElementById("payment-countdown");
  var deadline = null; // Date.now() based: the server says how many seconds are left
  var timer = null;
  var isFinal = root.getAttribute("data-final") === "true";
  var polling = !isFinal && Boolean(statusUrl); // no endpoint mounted: a static page

  function byId(id) {
    return document.getElementById(id);
  }

  function setText(id, text) {
    var node = byId(id);
    if (node && node.textContent !== text) {
      node.textContent = text;
    }
  }

  // --- copy buttons -------------------------------------------------------------------
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.top = "0";
    area.style.left = "-9999px";
    document.body.appendChild(area);
    area.select();
    var done = false;
    try {
      done = document.execCommand("copy");
    } catch (err) {
      done = false;
    }
    document.body.removeChild(area);
    return done;
  }

  function copied(button, ok) {
    var feedback = byId("copy-feedback");
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    button.textContent = ok ? "Copied" : "Select and copy";
    button.classList.toggle("copied", ok);
    if (feedback) {
      feedback.textContent = ok ? label.replace(/^Copy /, "") + " copied" : "Copy failed";
    }
    window.setTimeout(function () {
      button.textContent = label;
      button.classList.remove("copied");
    }, 1500);
  }

  function copy(button) {
    var source = byId(button.getAttribute("data-copy"));
    if (!source) {
      return;
    }
    var text = source.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { copied(button, true); },
        function () { copied(button, fallbackCopy(text)); }
      );
    } else {
      copied(button, fallbackCopy(text));
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    if (button) {
      event.preventDefault();
      copy(button);
    }
  });

  // --- countdown ----------------------------------------------------------------------
  function timeLeft(seconds) {
    if (seconds === null) {
      return "\u2014";
    }
    if (seconds <= 0) {
      return "Expired";
    }
    var hours = Math.floor(seconds / 3600);
    var minutes = Math.floor((seconds % 3600) / 60);
    var secs = seconds % 60;
    var mm = hours ? String(minutes).padStart(2, "0") : String(minutes);
    var text = mm + ":" + String(secs).padStart(2, "0") + " left";
    return hours ? hours + ":" + text : text;
  }

  function setDeadline(seconds) {
    deadline = seconds === null || seconds === undefined || seconds === ""
      ? null
      : Date.now() + Number(seconds) * 1000;
  }

  function tick() {
    if (!countdown) {
      return;
    }
    if (isFinal) {
      countdown.textContent = "\u2014";
      return;
    }
    var seconds = deadline === null ? null : Math.max(0, Math.round((deadline - Date.now()) / 1000));
    countdown.textContent = timeLeft(seconds);
  }

  // --- live status --------------------------------------------------------------------
  function showMemo(data) {
    if (!data.pay_extra_id || byId("payment-memo")) {
      setText("payment-memo", data.pay_extra_id || "");
      return;
    }
    var list = document.querySelector("#payment-pay .pay-details");
    if (!list) {
      return;
    }
    var term = document.createElement("dt");
    term.id = "payment-memo-label";
    term.textContent = (data.extra_id_name || "Memo") + " (required)";
    var detail = document.createElement("dd");
    detail.id = "payment-memo-row";
    var code = document.createElement("code");
    code.id = "payment-memo";
    code.className = "mono break";
    code.textContent = data.pay_extra_id;
    var button = document.createElement("button");
    button.id = "copy-memo";
    button.type = "button";
    button.className = "button small";
    button.setAttribute("data-copy", "payment-memo");
    button.textContent = "Copy " + (data.extra_id_name || "memo").toLowerCase();
    detail.appendChild(code);
    detail.appendChild(button);
    list.appendChild(term);
    list.appendChild(detail);
  }

  function showExplorer(data) {
    var slot = byId("payment-explorer-slot");
    if (!slot) {
      return;
    }
    var link = byId("payment-explorer");
    if (data.explorer_link) {
      if (!link) {
        slot.textContent = "";
        link = document.createElement("a");
        link.id = "payment-explorer";
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        link.textContent = "View on the block explorer";
        slot.appendChild(link);
      }
      if (link.getAttribute("href") !== data.explorer_link) {
        link.setAttribute("href", data.explorer_link);
      }
    } else if (data.transaction_hash && !byId("payment-hash")) {
      slot.textContent = "";
      var code = document.createElement("code");
      code.id = "payment-hash";
      code.className = "mono break";
      code.textContent = data.transaction_hash;
      slot.appendChild(code);
    }
  }

  function apply(data) {
    var status = byId("payment-status");
    if (status) {
      status.textContent = data.status_display;
      status.setAttribute("data-status", data.status);
      status.className = "status status-" + (data.status_color || "secondary");
    }
    var notice = byId("payment-registration-notice");
    if (notice && !data.registration_pending) {
      notice.parentNode.removeChild(notice);
    } else if (notice && data.registration_notice) {
      notice.textContent = data.registration_notice;
    }
    var pay = byId("payment-pay");
    if (data.pay_address) {
      setText("payment-address", data.pay_address);
      setText("payment-amount", data.pay_amount || "\u2014");
      var qr = byId("payment-qr");
      if (qr && data.qr_code_url && qr.getAttribute("src") !== data.qr_code_url) {
        qr.setAttribute("src", data.qr_code_url);
      }
      showMemo(data);
      if (pay && pay.hidden) {
        pay.hidden = false;
      }
    }
    setText("payment-received", data.received_display);
    setText("payment-credited", data.credited_display);
    setText("payment-balance", data.balance_display);
    showExplorer(data);
    setDeadline(data.expires_in_seconds);
    if (data.is_final) {
      isFinal = true;
      root.setAttribute("data-final", "true");
      // NowPayments' notice of completion may come before the transaction hash does (a worker
      // reads it next): keep asking a little longer for the explorer link.
      polling = !data.transaction_hash && !NO_MONEY[data.status] && hashPolls-- > 0;
      var live = byId("payment-live");
      if (live && !polling) {
        live.parentNode.removeChild(live);
      }
    }
    tick();
  }

  function schedule() {
    if (polling) {
      timer = window.setTimeout(poll, POLL_MS);
    }
  }

  function poll() {
    timer = null;
    fetch(statusUrl, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "application/json" },
    })
      .then(function (response) {
        if (response.status === 404 || response.status === 403) {
          polling = false; // gone, or no longer ours: nothing more to show
        }
        var type = response.headers.get("Content-Type") || "";
        if (!response.ok || type.indexOf("application/json") === -1) {
          throw new Error("status " + response.status);
        }
        return response.json();
      })
      .then(apply)
      .catch(function () { /* a missed poll; the next one catches up */ })
      .then(schedule);
  }

  setDeadline(countdown ? countdown.getAttribute("data-seconds") : null);
  window.setInterval(tick, 1000);
  if (polling) {
    schedule();
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && polling && timer !== null) {
      window.clearTimeout(timer);
      poll();
    }
  });
})();
