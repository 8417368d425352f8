// The etcd process helper lives with the local cluster scripts (deploy/local),
// which start it for demos too; tests import it from here.
export * from "../../../deploy/local/etcd.js";
