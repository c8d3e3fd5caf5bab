import { describe, expect, it } from "vitest";
import { buildQuery, dateRange, dicomDate, isoDate, personName, progressText, serverFromForm } from "../../src/pacs/query";

describe("PACS query form", () => {
  it("turns date inputs into DICOM dates and ranges", () => {
    expect(dicomDate("2024-01-31")).toBe("20240131");
    expect(dicomDate("31/01/2024")).toBe("");
    expect(dateRange("2024-01-01", "2024-12-31")).toBe("20240101-20241231");
    expect(dateRange("2024-01-01", "2024-01-01")).toBe("20240101");
    expect(dateRange("2024-01-01", "")).toBe("20240101-");
    expect(dateRange("", "2024-12-31")).toBe("-20241231");
    expect(dateRange("", "")).toBeNull();
  });

  it("leaves empty fields out and upper-cases the modality", () => {
    const q = buildQuery({ pid: " 123 ", name: "", from: "", to: "2020-05-06", modality: "ct", accession: "" });
    expect(q).toEqual({ patient_id: "123", patient_name: null, study_date: "-20200506", modality: "CT", accession: null, study_uid: null });
  });

  it("reads person names and dates as people do", () => {
    expect(personName("Doe^John")).toBe("Doe, John");
    expect(personName("Doe^John^Q^Dr^Jr")).toBe("Doe, Dr John Q Jr");
    expect(personName("Anonymous")).toBe("Anonymous");
    expect(personName("")).toBe("");
    expect(isoDate("20221208")).toBe("2022-12-08");
    expect(isoDate("unknown")).toBe("unknown");
  });

  it("says how far a retrieve is", () => {
    expect(progressText({ series_uid: "1.2", instances_done: 5, instances_total: 20, bytes: 2_500_000 })).toBe("5 of 20 instances (2.5 MB)");
    expect(progressText({ series_uid: "1.2", instances_done: 5, instances_total: null, bytes: 0 })).toBe("5 instances (0.0 MB)");
  });

  it("builds a server entry without its secret, rejecting bad ports", () => {
    const e = serverFromForm({ name: " main ", address: " http://pacs/dicom-web ", auth: "basic", user: "u", aet: "", port: "99999" });
    expect(e).toEqual({ name: "main", kind: "", address: "http://pacs/dicom-web", auth: "basic", user: "u", calling_aet: null, scp_port: null, ca_file: null });
    expect(serverFromForm({ name: "x", address: "dimse://A@h:104", auth: "weird", user: "", aet: "RB", port: "11112" }).auth).toBe("none");
    expect(serverFromForm({ name: "x", address: "dimse://A@h:104", auth: "none", user: "", aet: "RB", port: "11112" }).scp_port).toBe(11112);
  });
});
