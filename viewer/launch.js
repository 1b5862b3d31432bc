// wearfhir viewer: start the SMART App Launch 2 authorization (fhirclient does the protocol, PKCE S256 included).
"use strict";
(function () {
  var CLIENT_ID = "wearfhir-viewer";
  var READ_SCOPES = "openid fhirUser patient/Observation.rs patient/Patient.rs patient/Device.rs";
  var params = new URLSearchParams(window.location.search);
  // EHR launch: the EHR gives iss + launch; standalone launch: only iss, and the user picks the patient.
  var ehrLaunch = params.has("launch");
  var scope = (ehrLaunch ? "launch " : "launch/patient ") + READ_SCOPES;
  var status = document.getElementById("status");
  if (!params.get("iss")) {
    status.textContent = "No FHIR server given: open launch.html?iss=FHIR_BASE (standalone) or launch from your EHR.";
    return;
  }
  FHIR.oauth2.authorize({
    clientId: params.get("client_id") || CLIENT_ID,
    scope: scope,
    redirectUri: "index.html",
    pkceMode: "required"  // refuse servers that do not announce S256
  }).catch(function (error) {
    status.textContent = "The launch failed: " + (error && error.message ? error.message : String(error));
    status.setAttribute("role", "alert");
  });
})();
