package mediator

import (
	"context"
	"fmt"

	"github.com/openmediator/mediator/didcomm"
	"github.com/openmediator/mediator/record"
)

// Push-notification device registration (RFC 0734, push-notifications-fcm/1.0).
const (
	pushFCMPrefix    = didcomm.PrefixHTTPS + "push-notifications-fcm/1.0/"
	typeDeviceInfo   = pushFCMPrefix + "device-info"
	typePushProblem  = pushFCMPrefix + "problem-report"
	codeMissingValue = "missing-value"
)

type setDeviceInfo struct {
	DeviceToken    *string `json:"device_token"`
	DevicePlatform *string `json:"device_platform"`
}

type deviceInfo struct {
	didcomm.Header
	DeviceToken    *string `json:"device_token"`
	DevicePlatform *string `json:"device_platform"`
}

type ack struct {
	didcomm.Header
	Status string `json:"status"`
}

// maxDeviceTokenLen bounds what a wallet can make us store.
const maxDeviceTokenLen = 4096

// handleSetDeviceInfo stores (or, with both values null, removes) the
// wallet's push token and acknowledges it.
func (a *Agent) handleSetDeviceInfo(ctx context.Context, in *inbound, conn record.Connection) error {
	var req setDeviceInfo
	if err := in.msg.Decode(&req); err != nil {
		return a.reply(ctx, in, conn, didcomm.NewProblemReport(typePushProblem, in.msg, "message-parse-failure", err.Error(), false))
	}
	if (req.DeviceToken == nil) != (req.DevicePlatform == nil) {
		return a.reply(ctx, in, conn, didcomm.NewProblemReport(typePushProblem, in.msg, codeMissingValue,
			"device_token and device_platform must both be set, or both be null to unregister", false))
	}
	if req.DeviceToken != nil && (len(*req.DeviceToken) > maxDeviceTokenLen || len(*req.DevicePlatform) > 64) {
		return a.reply(ctx, in, conn, didcomm.NewProblemReport(typePushProblem, in.msg, "invalid-value", "device token or platform too long", false))
	}
	if err := a.store.SetDeviceInfo(ctx, conn.ID, req.DeviceToken, req.DevicePlatform); err != nil {
		return fmt.Errorf("mediator: set device info: %w", err)
	}
	a.log.InfoContext(ctx, "device info updated", "connection", conn.ID, "registered", req.DeviceToken != nil)
	return a.reply(ctx, in, conn, ack{Header: didcomm.ReplyHeader(didcomm.TypeAck, in.msg), Status: "OK"})
}

// handleGetDeviceInfo answers with the stored token, or nulls if none.
func (a *Agent) handleGetDeviceInfo(ctx context.Context, in *inbound, conn record.Connection) error {
	token, platform, ok, err := a.store.DeviceInfo(ctx, conn.ID)
	if err != nil {
		return fmt.Errorf("mediator: get device info: %w", err)
	}
	resp := deviceInfo{Header: didcomm.ReplyHeader(typeDeviceInfo, in.msg)}
	if ok {
		resp.DeviceToken, resp.DevicePlatform = &token, &platform
	}
	return a.reply(ctx, in, conn, resp)
}
